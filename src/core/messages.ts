// The wire protocol between the coordinator and participant services (JSON over SQS, versioned).
// Task tokens never appear here: they stay inside the coordinator.
import { z } from 'zod';

export const PROTOCOL_VERSION = 1 as const;

/** A participant service name: what `cdk.json` lists and what requests name. */
export const serviceName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,39}$/, 'must be 1-40 lowercase letters, digits or dashes, starting with a letter');

export const txId = z.string().regex(/^[A-Za-z0-9-]{8,64}$/, 'must be 8-64 letters, digits or dashes');

export const phaseMessageType = z.enum(['PREPARE', 'COMMIT', 'ABORT']);
export type PhaseMessageType = z.infer<typeof phaseMessageType>;

/** Coordinator -> participant request queue. */
export const participantMessage = z.object({
  v: z.literal(PROTOCOL_VERSION),
  type: phaseMessageType,
  txId,
  participant: serviceName,
  /** The operation the client asked of this participant; present on PREPARE only. */
  operation: z.unknown().optional(),
  /** Epoch ms after which the coordinator will no longer wait for this phase's answer. */
  deadlineAt: z.number().int().nonnegative(),
  /** 1 for the first send of this phase, higher for re-sends. */
  attempt: z.number().int().positive(),
});
export type ParticipantMessage = z.infer<typeof participantMessage>;

export const vote = z.enum(['YES', 'NO', 'READ_ONLY']);
export type Vote = z.infer<typeof vote>;

/** Participant -> coordinator reply queue. */
/** The longest reason a vote or a dead letter carries. */
export const MAX_REASON_CHARS = 1_000;

/** A reason cut to MAX_REASON_CHARS, marked with … when it was cut. */
export function clipReason(reason: string): string {
  return reason.length <= MAX_REASON_CHARS ? reason : `${reason.slice(0, MAX_REASON_CHARS - 1)}…`;
}

export const voteMessage = z.object({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal('VOTE'),
  txId,
  participant: serviceName,
  vote,
  reason: z.string().max(MAX_REASON_CHARS).optional(),
});
export type VoteMessage = z.infer<typeof voteMessage>;

export const ackMessage = z.object({
  v: z.literal(PROTOCOL_VERSION),
  type: z.literal('ACK'),
  txId,
  participant: serviceName,
  phase: z.enum(['COMMIT', 'ABORT']),
});
export type AckMessage = z.infer<typeof ackMessage>;

export const replyMessage = z.discriminatedUnion('type', [voteMessage, ackMessage]);
export type ReplyMessage = z.infer<typeof replyMessage>;

/** Parse a message body; returns a reason string instead of throwing so batches never crash. */
export function parseMessage<T>(schema: z.ZodType<T>, body: string): { ok: true; value: T } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { ok: false, reason: 'body is not JSON' };
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    return { ok: false, reason: result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') };
  }
  return { ok: true, value: result.data };
}
