// The coordinator's configuration, read once from the Lambda environment the CDK app sets.
import { z } from 'zod';
import { DEFAULT_SUPERVISION, type SupervisionSettings, TIMEOUT_BOUNDS, type TimeoutDefaults } from '../core/transaction';

/** An environment variable holding a JSON object of service -> `value` (what: how an error names the values). */
const serviceMap = <T>(value: z.ZodType<T>, what: string) =>
  z.string().transform((raw, ctx) => {
    try {
      return z.record(z.string(), value).parse(JSON.parse(raw));
    } catch {
      ctx.addIssue({ code: 'custom', message: `must be a JSON object of service -> ${what}, got ${raw}` });
      return z.NEVER;
    }
  });
const queueMap = (what: string) => serviceMap(z.string().min(1), what);

const envSchema = z.object({
  TX_TABLE: z.string().min(1),
  LOCK_TABLE: z.string().min(1),
  PARTICIPANT_QUEUES: queueMap('queue URL'),
  /** Participant -> its reply queue's ARN: the reply function knows a sender by the queue its message came on. */
  REPLY_QUEUE_ARNS: queueMap('reply queue ARN').optional(),
  REPLY_DEAD_LETTER_QUEUE_URL: z.string().optional(),
  /** Participant -> the role ARN it runs as (when the deployment names them): who may abort which transaction. */
  PARTICIPANT_PRINCIPALS: queueMap('role ARN').optional(),
  /** Participant -> the SQS sender ids (a role's unique id, `AROA...`) its replies must carry: checked besides the queue. */
  PARTICIPANT_SENDER_IDS: serviceMap(z.array(z.string().min(1)), 'array of sender ids').optional(),
  SUPERVISION_SHARDS: z.coerce.number().int().min(1).max(1024).default(DEFAULT_SUPERVISION.shards),
  SUPERVISION_BUCKET_SECONDS: z.coerce.number().int().min(1).max(3600).default(DEFAULT_SUPERVISION.bucketSeconds),
  PARTICIPANT_DEAD_LETTER_QUEUES: queueMap('dead-letter queue URL').optional(),
  STATE_MACHINE_ARN: z.string().optional(),
  /** The EventBridge bus decision events go to (a name, `default`, or an ARN); absent: decision events are off. */
  DECISION_EVENT_BUS: z.string().min(1).max(1600).optional(),
  /** `true`: also publish `Transaction Finished` (context `finishEvents`). */
  FINISH_EVENTS: z.enum(['true', 'false']).default('false'),
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
  participantQueues: Record<string, string>;
  /** Participant -> its reply queue's ARN (the reply function's authority). */
  replyQueueArns?: Record<string, string>;
  /** Participant -> the SQS sender ids its replies must carry, when configured. */
  participantSenderIds?: Record<string, string[]>;
  /** Participant -> the role ARN it runs as, when configured. */
  participantPrincipals?: Record<string, string>;
  /** Where refused replies go, with the reason. */
  replyDeadLetterQueueUrl?: string;
  /** How transactions are grouped for supervision. */
  supervision?: SupervisionSettings;
  /** Participant -> its request queue's DLQ (copies of messages left unacknowledged go there). */
  participantDeadLetterQueues?: Record<string, string>;
  stateMachineArn?: string;
  /** Where decision events go (docs/events.md); absent: not published. */
  decisionEventBus?: string;
  /** Whether `Transaction Finished` is published too (off: only decisions and doubt). */
  finishEvents?: boolean;
  retentionDays: number;
  defaults: TimeoutDefaults;
}

let cached: { key: string; config: CoordinatorConfig } | undefined;

/**
 * Read and check the environment; a bad deployment fails at the first invocation, loudly. The
 * answer is kept while the variables it reads stay the same (checking them is cheap; parsing them
 * with zod on every invocation cost about 10 ms of CPU per transaction on the embedded stack).
 */
export function readConfig(env: NodeJS.ProcessEnv = process.env): CoordinatorConfig {
  const key = JSON.stringify(Object.keys(envSchema.shape).map((name) => env[name]));
  if (cached?.key === key) return cached.config;
  const config = parseConfig(env);
  cached = { key, config };
  return config;
}

function parseConfig(env: NodeJS.ProcessEnv): CoordinatorConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`coordinator environment is invalid: ${detail}`);
  }
  const e = parsed.data;
  return {
    txTable: e.TX_TABLE,
    lockTable: e.LOCK_TABLE,
    participantQueues: e.PARTICIPANT_QUEUES,
    replyQueueArns: e.REPLY_QUEUE_ARNS ?? {},
    ...(e.PARTICIPANT_PRINCIPALS ? { participantPrincipals: e.PARTICIPANT_PRINCIPALS } : {}),
    ...(e.PARTICIPANT_SENDER_IDS ? { participantSenderIds: e.PARTICIPANT_SENDER_IDS } : {}),
    ...(e.REPLY_DEAD_LETTER_QUEUE_URL ? { replyDeadLetterQueueUrl: e.REPLY_DEAD_LETTER_QUEUE_URL } : {}),
    supervision: { shards: e.SUPERVISION_SHARDS, bucketSeconds: e.SUPERVISION_BUCKET_SECONDS },
    participantDeadLetterQueues: e.PARTICIPANT_DEAD_LETTER_QUEUES ?? {},
    ...(e.STATE_MACHINE_ARN ? { stateMachineArn: e.STATE_MACHINE_ARN } : {}),
    ...(e.DECISION_EVENT_BUS ? { decisionEventBus: e.DECISION_EVENT_BUS } : {}),
    ...(e.FINISH_EVENTS === 'true' ? { finishEvents: true } : {}),
    retentionDays: e.RETENTION_DAYS,
    defaults: { prepareSeconds: e.DEFAULT_PREPARE_SECONDS, commitSeconds: e.DEFAULT_COMMIT_SECONDS },
  };
}
