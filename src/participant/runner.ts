// Runs one participant message through the barrier and sends the reply (VOTE or ACK) to the
// coordinator's reply queue. The consumer and the Lambda handler are thin loops around `handle`.
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { documentClient } from '../aws/document-client';
import { SqsReplySender } from '../aws/reply-sender';
import { systemClock, systemIds, systemRandom, systemSleep } from '../aws/system';
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
import { LOCK_LIMITS, type LockMode, type OwnerRef } from '../core/locks';
import type { LockService } from '../locks/service';
import type { BarrierStorePort, Clock, IdSource, RandomSource, ReplySender, Sleep } from '../core/ports';
import { BarrierStore, type TransactWrite } from './barrier-store';
import type { DecisionSource } from './decisions';
import type { Participant } from './define';
import { DEFAULT_INQUIRE_AFTER_MS, DEFAULT_INQUIRY_MAX_BACKOFF_MS, InDoubtWatch, type InquiryReport, inquire, inquireDue } from './inquiry';
import type { DecisionAnswer } from '../core/recovery';
import { type Repeating, repeatEvery } from './repeat';

export type ParticipantLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

/** A prepare run's claim on the barrier lives this long unless its heartbeat renews it. */
export const DEFAULT_LEASE_MS = 30_000;
/** A lock's lease while its prepare runs (renewed every third of it); see `lockLeaseMs`. */
export const DEFAULT_LOCK_LEASE_MS = 15_000;
/** A YES voter's locks are kept this long past the prepare deadline (clock skew, the decision write). */
const LOCK_DEADLINE_GRACE_MS = 5_000;
/** How long a duplicate PREPARE waits in process for the run that owns the barrier. */
export const DEFAULT_BUSY_WAIT_MS = 10_000;
const MAX_BUSY_POLL_MS = 1_000;

/**
 * How to build a runner. Its side effects come either as ports (`barrierStore`, `replies`, and
 * `nowMs`, `newRunId`, `random`, `sleep`: what a simulation passes) or, for the AWS deployment, as
 * the table and queue they are built on (`table` + `dynamodb`, `replyQueueUrl` + `sqs`); a port
 * given wins over the AWS options for the same thing. Clock, ids, randomness and sleep default to
 * the system's.
 */
export interface RunnerOptions<W = TransactWrite> {
  participant: Participant<W>;
  /** The coordinator's reply queue; not needed when `replies` is given. */
  replyQueueUrl?: string;
  /** The participant's own table (partition key `pk`, type S), which holds its barrier records; not needed when `barrierStore` is given. */
  table?: string;
  sqs?: SQSClient;
  dynamodb?: DynamoDBClient;
  /** The barrier records, which also apply the participant's effects (default: a BarrierStore on `table`). */
  barrierStore?: BarrierStorePort<W>;
  /** Where votes and acknowledgements go (default: an SqsReplySender on `replyQueueUrl`). */
  replies?: ReplySender;
  logger?: ParticipantLogger;
  /** How long a crashed prepare run blocks duplicates; renewed every third of it while the run lives. */
  leaseMs?: number;
  /**
   * A duplicate PREPARE that finds another live run waits up to this long for it (polling the barrier)
   * and then re-sends that run's vote. Waiting here, rather than handing the message back to SQS,
   * answers within milliseconds and does not spend the message's receive count towards its DLQ.
   */
  busyWaitMs?: number;
  nowMs?: Clock;
  newRunId?: IdSource;
  /** Jitter of the in-doubt inquiry's backoff. */
  random?: RandomSource;
  /** Every wait: a duplicate's polling of a busy barrier, the heartbeats, the consumer's pauses. */
  sleep?: Sleep;
  /**
   * The lock service behind `lock()` in prepare (see src/locks). Locks are owned by the transaction,
   * held for this service (scope), and released after its commit or abort.
   */
  locks?: LockService;
  /**
   * Lease of a lock while prepare runs; a heartbeat renews it. When the vote is YES the leases are
   * extended past the prepare deadline (plus a grace), so they outlive the undecided window even in
   * a Lambda that stops running after the vote; once decided, COMMITTING keeps its locks through the
   * log and an abort releases them. A crashed prepare's locks are free again after this lease.
   */
  lockLeaseMs?: number;
  /** Told when a lock() call starts (true) and stops (false) waiting; see AcquireInput.onWait. */
  onLockWait?: (waiting: boolean) => void;
  /**
   * Where to read the coordinator's decision when this participant voted YES and heard nothing
   * (see ./decisions: the API or the log table). Without it, the participant waits for phase two.
   */
  decisions?: DecisionSource;
  /** Ask this long after the prepare deadline (default 30 s). */
  inquireAfterMs?: number;
  /** Unanswered questions are asked again with backoff up to this (default 60 s). */
  inquiryMaxBackoffMs?: number;
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
  /** In-doubt inquiry; present when `decisions` is configured. */
  readonly inDoubt?: InDoubtInquiry;
}

export interface InDoubtInquiry {
  /** Transactions this process voted YES on and has not seen decided. */
  readonly watched: number;
  /** Ask for one transaction now and apply the answer through the barrier. */
  inquire(txId: string): Promise<DecisionAnswer>;
  /** Ask for the watched transactions whose time has come, at most `max`. Never throws. */
  inquireDue(max?: number): Promise<InquiryReport>;
  /**
   * The restart scan (bounded): watch every barrier record left undecided (PREPARED with YES or
   * READ_ONLY, or PREPARING whose run died). Run at start, since a restart forgets what was watched; a Lambda
   * participant runs it on a schedule. Nothing else needs redoing after a crash: an effect is
   * written only together with the barrier state that records it.
   */
  recoverStored(): Promise<{ watched: number }>;
}

export { documentClient };

export function createRunner<W = TransactWrite>(options: RunnerOptions<W>): ParticipantRunner {
  const { participant } = options;
  const store = barrierStoreOf(options);
  const replies = replySenderOf(options);
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const busyWaitMs = options.busyWaitMs ?? DEFAULT_BUSY_WAIT_MS;
  const nowMs = options.nowMs ?? systemClock;
  const newRunId = options.newRunId ?? systemIds;
  const random = options.random ?? systemRandom;
  const sleep = options.sleep ?? systemSleep;
  const locks = options.locks;
  const lockLeaseMs = options.lockLeaseMs ?? DEFAULT_LOCK_LEASE_MS;
  const scope = participant.service;
  const watch = options.decisions
    ? new InDoubtWatch(options.inquireAfterMs ?? DEFAULT_INQUIRE_AFTER_MS, options.inquiryMaxBackoffMs ?? DEFAULT_INQUIRY_MAX_BACKOFF_MS, (txId) =>
        options.logger?.warn('too many transactions in doubt: stopped watching the oldest (a restart scan finds it again)', { txId }),
      )
    : undefined;

  async function reply(message: ReplyMessage): Promise<void> {
    // Checked on the way out too: the coordinator would dead-letter a reply it cannot parse.
    await replies.send(replyMessage.parse(message));
  }

  async function handle(message: ParticipantMessage): Promise<Outcome> {
    if (message.participant !== participant.service) {
      throw new MalformedMessageError(`message for participant '${message.participant}' reached '${participant.service}'`);
    }
    const { txId } = message;
    const runId = newRunId();
    const owner: OwnerRef = { kind: 'tx', id: txId };
    // Locks this delivery was granted. releaseAll works from the transaction's held-list, and a
    // concurrent ABORT's releaseAll can forget a resource just before a waiting acquire here is
    // granted it; releasing what this run acquired, too, closes that window.
    // Each with the lease end of its grant (heartbeats only move leases later).
    const acquired = new Map<string, number>();
    const releaseLocks = async () => {
      if (!locks) return;
      const released = new Set(await locks.releaseAll(owner, scope));
      for (const resource of acquired.keys()) if (!released.has(resource)) await locks.release(resource, owner, scope);
    };
    const lock = locks
      ? async (resource: string, mode: LockMode = 'X') => {
          const grant = await locks.acquire({
            resource,
            owner,
            mode,
            scope,
            leaseMs: lockLeaseMs,
            waitMs: Math.min(LOCK_LIMITS.maxWaitMs, Math.max(0, message.deadlineAt - nowMs())),
            ...(options.onLockWait ? { onWait: options.onLockWait } : {}),
          });
          acquired.set(resource, grant.leaseUntilMs);
          return grant;
        }
      : undefined;
    const ports: BarrierPorts = {
      nowMs,
      read: () => store.read(txId),
      // The user's effect goes in the same atomic write as the barrier transition that records it.
      write: (expectedRev, next, writes) => store.write(txId, expectedRev, next, nowMs(), writes as readonly W[]),
      // A PREPARE that arrives after its deadline votes NO without running user code: the
      // coordinator records no vote at or after the deadline, so a YES now could only hold resources.
      prepare: (operation) =>
        nowMs() >= message.deadlineAt
          ? Promise.resolve({ vote: 'NO' as const, reason: 'PREPARE arrived after its deadline', writes: [] })
          : participant.prepare({ txId, operation, deadlineAt: message.deadlineAt, ...(lock ? { lock } : {}) }),
      commit: (operation) => participant.commit({ txId, operation }),
      abort: (operation) => participant.abort({ txId, operation }),
    };
    const heartbeat = message.type === 'PREPARE' ? startHeartbeat(sleep, store, txId, runId, leaseMs, nowMs, options.logger) : undefined;
    const lockHeartbeat = message.type === 'PREPARE' && locks ? startLockHeartbeat(sleep, locks, owner, scope, lockLeaseMs, options.logger) : undefined;
    let outcome: Outcome;
    try {
      outcome = await waitWhileBusy(sleep, () => runBarrier(message.type, message.operation, ports, { runId, leaseMs }), busyWaitMs);
    } finally {
      await heartbeat?.stop();
      await lockHeartbeat?.stop();
    }
    // Locks are freed once nothing of this transaction can still be written here: after the
    // COMMITTED or ABORTED write, and after a NO (which holds nothing and gets no phase two).
    // A READ_ONLY voter keeps its read locks until phase two reaches it (the coordinator sends it
    // COMMIT or ABORT and waits for its ACK): releasing them at the vote would break two-phase
    // locking (docs/consistency.md). They go with its ACK.
    if (outcome.kind === 'ack' || (outcome.kind === 'vote' && outcome.vote === 'NO')) await releaseLocks();
    else if (locks && outcome.kind === 'vote' && !(acquired.size > 0 && Math.min(...acquired.values()) >= message.deadlineAt + LOCK_DEADLINE_GRACE_MS)) {
      // YES or READ_ONLY: nothing runs for this transaction here until the decision arrives, so cover
      // the undecided window. Not needed (two round trips before the vote saved) when every lock this
      // run was granted already covers it, as a default lease does a default deadline; a replayed
      // PREPARE, whose vote was stored, was granted nothing here and renews what the first run took.
      const coverMs = Math.min(LOCK_LIMITS.maxLeaseMs, Math.max(lockLeaseMs, message.deadlineAt - nowMs() + LOCK_DEADLINE_GRACE_MS));
      const lost = await locks.renewAll(owner, scope, coverMs);
      // A lost lock was taken over, which only happens once the transaction can no longer commit.
      if (lost.length > 0) options.logger?.warn('locks were taken over before the vote', { txId, lost });
    }
    const base = { v: PROTOCOL_VERSION, txId, participant: participant.service } as const;
    if (outcome.kind === 'vote') {
      const vote: VoteMessage = { ...base, type: 'VOTE', vote: outcome.vote, ...(outcome.reason === undefined ? {} : { reason: outcome.reason }) };
      await reply(vote);
    } else if (outcome.kind === 'ack') {
      const ack: AckMessage = { ...base, type: 'ACK', phase: outcome.phase };
      await reply(ack);
    }
    watch?.note(message, outcome, nowMs());
    return outcome;
  }

  const decisions = options.decisions;
  const inDoubt: InDoubtInquiry | undefined =
    decisions && watch
      ? {
          get watched() {
            return watch.size;
          },
          inquire: (txId) => inquire({ participant: participant.service, decisions, handle, nowMs, random }, txId),
          inquireDue: (max = 16) =>
            inquireDue({ participant: participant.service, decisions, handle, nowMs, random }, watch, max, (txId, err) =>
              options.logger?.warn('in-doubt inquiry failed; asking again later', { txId, error: err as Error }),
            ),
          async recoverStored() {
            const inquireAfterMs = options.inquireAfterMs ?? DEFAULT_INQUIRE_AFTER_MS;
            const found = await store.scanUnsettled();
            for (const b of found) watch.watch(b.txId, b.updatedAtMs + inquireAfterMs);
            return { watched: found.length };
          },
        }
      : undefined;

  return {
    service: participant.service,
    handle,
    ...(inDoubt ? { inDoubt } : {}),
    async handleBody(body) {
      const parsed = parseMessage(participantMessage, body);
      if (!parsed.ok) throw new MalformedMessageError(parsed.reason);
      return handle(parsed.value);
    },
  };
}

function barrierStoreOf<W>(options: RunnerOptions<W>): BarrierStorePort<W> {
  if (options.barrierStore) return options.barrierStore;
  if (!options.table) throw new Error(`participant ${options.participant.service}: RunnerOptions needs \`barrierStore\` or \`table\``);
  // Without a store of its own kind, the participant's writes are DynamoDB actions (W = TransactWrite).
  return new BarrierStore(documentClient(options.dynamodb), options.table, options.participant.service) as unknown as BarrierStorePort<W>;
}

function replySenderOf<W>(options: RunnerOptions<W>): ReplySender {
  if (options.replies) return options.replies;
  if (!options.replyQueueUrl) throw new Error(`participant ${options.participant.service}: RunnerOptions needs \`replies\` or \`replyQueueUrl\``);
  return new SqsReplySender(options.replyQueueUrl, options.sqs);
}

/** Retries while another run owns the barrier, with doubling pauses; the wait is counted, not clocked. */
async function waitWhileBusy(sleep: Sleep, run: () => Promise<Outcome>, busyWaitMs: number): Promise<Outcome> {
  let waitedMs = 0;
  let pauseMs = 50;
  for (;;) {
    try {
      return await run();
    } catch (err) {
      if (!(err instanceof BarrierBusyError) || waitedMs >= busyWaitMs) throw err;
      const ms = Math.max(1, Math.min(pauseMs, err.retryAfterMs, busyWaitMs - waitedMs));
      await sleep(ms);
      waitedMs += ms;
      pauseMs = Math.min(pauseMs * 2, MAX_BUSY_POLL_MS);
    }
  }
}

/** Renews the transaction's locks while its prepare runs (a long wait for one lock must not cost the others). */
function startLockHeartbeat(sleep: Sleep, locks: LockService, owner: OwnerRef, scope: string, leaseMs: number, logger: ParticipantLogger | undefined): Repeating {
  return repeatEvery(
    sleep,
    leaseMs / 3,
    () => locks.renewAll(owner, scope, leaseMs),
    (err) => logger?.warn('lock lease renewal failed', { txId: owner.id, error: err as Error }),
  );
}

/** Keeps a live prepare run's claim from expiring, so a duplicate waits instead of racing it. */
function startHeartbeat(
  sleep: Sleep,
  store: BarrierStorePort,
  txId: string,
  runId: string,
  leaseMs: number,
  nowMs: () => number,
  logger: ParticipantLogger | undefined,
): Repeating {
  return repeatEvery(
    sleep,
    leaseMs / 3,
    async () => {
      const stored = await store.read(txId);
      const next = renewClaim(stored.record, runId, nowMs(), leaseMs);
      // A failed condition means the record moved on (our own write, or an ABORT): nothing to renew.
      if (next) await store.write(txId, stored.rev, next, nowMs());
    },
    (err) => logger?.warn('barrier claim renewal failed', { txId, error: err as Error }),
  );
}
