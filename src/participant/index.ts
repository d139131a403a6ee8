// The participant SDK: define a participant, then run it as a consumer or as a Lambda handler.
export { defineParticipant, type Participant, type ParticipantDefinition, type PhaseInput, type PrepareAnswer, type PrepareInput } from './define';
export { BarrierStore, MAX_EFFECT_WRITES, type TransactWrite, barrierKey } from './barrier-store';
export {
  DEFAULT_BUSY_WAIT_MS,
  DEFAULT_LEASE_MS,
  MalformedMessageError,
  type ParticipantLogger,
  type ParticipantRunner,
  type RunnerOptions,
  createRunner,
  documentClient,
} from './runner';
export { type Consumer, type ConsumerOptions, startConsumer } from './consumer';
export { sqsHandler } from './lambda';
export { type DecisionAnswer, type DecisionSource, apiDecisions } from './decisions';
export { DEFAULT_INQUIRE_AFTER_MS, type InquiryReport } from './inquiry';
export type { InDoubtInquiry } from './runner';
export { BarrierBusyError, EffectRejectedError, ProtocolViolationError } from '../core/barrier';
