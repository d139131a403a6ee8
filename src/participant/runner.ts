// Runs one participant message through the barrier and sends the reply (VOTE or ACK) to the
// coordinator's reply queue. The consumer and the Lambda handler are thin loops around `handle`.
import { randomUUID } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient, SendMessageCommand } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { Logger } from '@aws-lambda-powertools/logger';
import { BarrierBusyError, type BarrierPorts, type Outcome, renewClaim, runBarrier } from '../core/barrier';
import {
  type AckMessage,
  PROTOCOL_VERSION,
  type ParticipantMessage,
  type ReplyMessage,
  type VoteMessage,
  parseMessage,
  participantMessage,
  replyMessage,
} from '../core/messages';
import { BarrierStore } from './barrier-store';
import type { Participant } from './define';

export type ParticipantLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

/** A prepare run's claim on the barrier lives this long unless its heartbeat renews it. */
export const DEFAULT_LEASE_MS = 30_000;
/** How long a duplicate PREPARE waits in process for the run that owns the barrier. */
export const DEFAULT_BUSY_WAIT_MS = 10_000;
const MAX_BUSY_POLL_MS = 1_000;

export interface RunnerOptions {
  participant: Participant;
  replyQueueUrl: string;
  /** The participant's own table (partition key `pk`, type S), which holds its barrier records. */
  table: string;
  sqs?: SQSClient;
  dynamodb?: DynamoDBClient;
  logger?: ParticipantLogger;
  /** How long a crashed prepare run blocks duplicates; renewed every third of it while the run lives. */
  leaseMs?: number;
  /**
   * A duplicate PREPARE that finds another live run waits up to this long for it (polling the barrier)
   * and then re-sends that run's vote. Waiting here, rather than handing the message back to SQS,
   * answers within milliseconds and does not spend the message's receive count towards its DLQ.
   */
  busyWaitMs?: number;
  nowMs?: () => number;
  newRunId?: () => string;
}

/** The message cannot be processed as sent: it goes to the dead-letter queue with this reason. */
export class MalformedMessageError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'MalformedMessageError';
  }
}

export interface ParticipantRunner {
  readonly service: string;
  /** Parses a queue message body and handles it; throws MalformedMessageError for a bad body. */
  handleBody(body: string): Promise<Outcome>;
  handle(message: ParticipantMessage): Promise<Outcome>;
}

export function documentClient(dynamodb: DynamoDBClient = new DynamoDBClient({})): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(dynamodb, { marshallOptions: { removeUndefinedValues: true } });
}

export function createRunner(options: RunnerOptions): ParticipantRunner {
  const { participant, replyQueueUrl } = options;
  const sqs = options.sqs ?? new SQSClient({});
  const store = new BarrierStore(documentClient(options.dynamodb), options.table, participant.service);
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const busyWaitMs = options.busyWaitMs ?? DEFAULT_BUSY_WAIT_MS;
  const nowMs = options.nowMs ?? (() => Date.now());
  const newRunId = options.newRunId ?? (() => randomUUID());

  async function reply(message: ReplyMessage): Promise<void> {
    // Checked on the way out too: the coordinator would dead-letter a reply it cannot parse.
    const body = JSON.stringify(replyMessage.parse(message));
    await sqs.send(new SendMessageCommand({ QueueUrl: replyQueueUrl, MessageBody: body }));
  }

  async function handle(message: ParticipantMessage): Promise<Outcome> {
    if (message.participant !== participant.service) {
      throw new MalformedMessageError(`message for participant '${message.participant}' reached '${participant.service}'`);
    }
    const { txId } = message;
    const runId = newRunId();
    const ports: BarrierPorts = {
      nowMs,
      read: () => store.read(txId),
      write: (expectedRev, next) => store.write(txId, expectedRev, next, nowMs()),
      prepare: (operation) => participant.prepare({ txId, operation, deadlineAt: message.deadlineAt }),
      commit: (operation) => participant.commit({ txId, operation }),
      abort: (operation) => participant.abort({ txId, operation }),
    };
    const heartbeat = message.type === 'PREPARE' ? startHeartbeat(store, txId, runId, leaseMs, nowMs, options.logger) : undefined;
    let outcome: Outcome;
    try {
      outcome = await waitWhileBusy(() => runBarrier(message.type, message.operation, ports, { runId, leaseMs }), busyWaitMs);
    } finally {
      await heartbeat?.stop();
    }
    const base = { v: PROTOCOL_VERSION, txId, participant: participant.service } as const;
    if (outcome.kind === 'vote') {
      const vote: VoteMessage = { ...base, type: 'VOTE', vote: outcome.vote, ...(outcome.reason === undefined ? {} : { reason: outcome.reason }) };
      await reply(vote);
    } else if (outcome.kind === 'ack') {
      const ack: AckMessage = { ...base, type: 'ACK', phase: outcome.phase };
      await reply(ack);
    }
    return outcome;
  }

  return {
    service: participant.service,
    handle,
    async handleBody(body) {
      const parsed = parseMessage(participantMessage, body);
      if (!parsed.ok) throw new MalformedMessageError(parsed.reason);
      return handle(parsed.value);
    },
  };
}

/** Retries while another run owns the barrier, with doubling pauses; the wait is counted, not clocked. */
async function waitWhileBusy(run: () => Promise<Outcome>, busyWaitMs: number): Promise<Outcome> {
  let waitedMs = 0;
  let pauseMs = 50;
  for (;;) {
    try {
      return await run();
    } catch (err) {
      if (!(err instanceof BarrierBusyError) || waitedMs >= busyWaitMs) throw err;
      const ms = Math.max(1, Math.min(pauseMs, err.retryAfterMs, busyWaitMs - waitedMs));
      await new Promise((resolve) => setTimeout(resolve, ms));
      waitedMs += ms;
      pauseMs = Math.min(pauseMs * 2, MAX_BUSY_POLL_MS);
    }
  }
}

/** Keeps a live prepare run's claim from expiring, so a duplicate waits instead of racing it. */
function startHeartbeat(
  store: BarrierStore,
  txId: string,
  runId: string,
  leaseMs: number,
  nowMs: () => number,
  logger: ParticipantLogger | undefined,
): { stop(): Promise<void> } {
  let stopped = false;
  let renewing = false;
  let inFlight: Promise<void> = Promise.resolve();
  const renew = async (): Promise<void> => {
    const stored = await store.read(txId);
    const next = renewClaim(stored.record, runId, nowMs(), leaseMs);
    // A failed condition means the record moved on (our own write, or an ABORT): nothing to renew.
    if (next) await store.write(txId, stored.rev, next, nowMs());
  };
  const timer = setInterval(() => {
    if (stopped || renewing) return;
    renewing = true;
    inFlight = renew()
      .catch((err: unknown) => logger?.warn('barrier claim renewal failed', { txId, error: err as Error }))
      .finally(() => {
        renewing = false;
      });
  }, Math.max(1, Math.floor(leaseMs / 3)));
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await inFlight;
    },
  };
}
