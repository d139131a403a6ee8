// The coordinator's configuration, read once from the Lambda environment the CDK app sets.
import { z } from 'zod';
import { TIMEOUT_BOUNDS, type TimeoutDefaults } from '../core/transaction';

const queueMap = (what: string) =>
  z.string().transform((raw, ctx) => {
    try {
      return z.record(z.string(), z.string().min(1)).parse(JSON.parse(raw));
    } catch {
      ctx.addIssue({ code: 'custom', message: `must be a JSON object of service -> ${what} URL, got ${raw}` });
      return z.NEVER;
    }
  });

const envSchema = z.object({
  TX_TABLE: z.string().min(1),
  LOCK_TABLE: z.string().min(1),
  REPLY_QUEUE_URL: z.string().min(1),
  PARTICIPANT_QUEUES: queueMap('queue'),
  PARTICIPANT_DEAD_LETTER_QUEUES: queueMap('dead-letter queue').optional(),
  STATE_MACHINE_ARN: z.string().optional(),
  RETENTION_DAYS: z.coerce.number().int().positive().default(30),
  DEFAULT_PREPARE_SECONDS: z.coerce
    .number()
    .int()
    .min(TIMEOUT_BOUNDS.prepareSeconds.min)
    .max(TIMEOUT_BOUNDS.prepareSeconds.max)
    .default(TIMEOUT_BOUNDS.prepareSeconds.default),
  DEFAULT_COMMIT_SECONDS: z.coerce
    .number()
    .int()
    .min(TIMEOUT_BOUNDS.commitSeconds.min)
    .max(TIMEOUT_BOUNDS.commitSeconds.max)
    .default(TIMEOUT_BOUNDS.commitSeconds.default),
});

export interface CoordinatorConfig {
  txTable: string;
  /** The lock table (src/aws/lock-store.ts); always set from the environment, optional for tests that build a config by hand. */
  lockTable?: string;
  replyQueueUrl: string;
  participantQueues: Record<string, string>;
  /** Participant -> its request queue's DLQ (copies of messages left unacknowledged go there). */
  participantDeadLetterQueues?: Record<string, string>;
  stateMachineArn?: string;
  retentionDays: number;
  defaults: TimeoutDefaults;
}

/** Read and check the environment; a bad deployment fails at the first invocation, loudly. */
export function readConfig(env: NodeJS.ProcessEnv = process.env): CoordinatorConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`coordinator environment is invalid: ${detail}`);
  }
  const e = parsed.data;
  return {
    txTable: e.TX_TABLE,
    lockTable: e.LOCK_TABLE,
    replyQueueUrl: e.REPLY_QUEUE_URL,
    participantQueues: e.PARTICIPANT_QUEUES,
    participantDeadLetterQueues: e.PARTICIPANT_DEAD_LETTER_QUEUES ?? {},
    ...(e.STATE_MACHINE_ARN ? { stateMachineArn: e.STATE_MACHINE_ARN } : {}),
    retentionDays: e.RETENTION_DAYS,
    defaults: { prepareSeconds: e.DEFAULT_PREPARE_SECONDS, commitSeconds: e.DEFAULT_COMMIT_SECONDS },
  };
}
