// The coordinator's use cases: start a transaction, dispatch a phase, take a reply.
// Decisions come from src/core; this module only sequences reads, conditional writes and sends.
import { mutated } from './core/mutations';
import { createHash } from 'node:crypto';
import { systemClock, systemIds } from './aws/system';
import { z } from 'zod';
import { type AckMessage, type ParticipantMessage, type ReplyMessage, type VoteMessage, parseMessage, replyMessage } from './core/messages';
import {
  awaitingVote,
  executionInput,
  newTransaction,
  phaseTwoResult,
  signalAfterAck,
  signalAfterVote,
  tally,
  validateStartRequest,
  awaitingAck,
  declaredResources,
  IN_DOUBT_AFTER_ATTEMPTS,
  STATUS_PHASE,
  type FieldError,
  type Phase,
  type PhaseTwoResult,
  type TxRecord,
  type TxView,
  toView,
} from './core/transaction';
import type { CoordinatorConfig } from './aws/config';
import type { ListPage, TxLogPort } from './core/ports';
import type { ParticipantQueuesPort, WorkflowPort } from './core/ports';
import { METRIC, noMetrics, type MetricsPort } from './metrics';
import { LOCK_LIMITS, type OwnerRef } from './core/locks';
import { type LockService, LockWaitTimeoutError, TransactionAbortedError } from './locks/service';

/** How long one dispatch waits for a declared resource's lock: well inside the function's 10 s timeout. */
const DISPATCH_LOCK_WAIT_MS = 6_000;
/** Coordinator-held locks outlive the prepare deadline by this much (clock skew, the Decide write). */
const LOCK_DEADLINE_GRACE_MS = 5_000;
/** The lock scope of resources the coordinator holds for a transaction (released after Finalize). */
export const COORDINATOR_LOCK_SCOPE = 'coordinator';

export interface CoordinatorDeps {
  config: CoordinatorConfig;
  log: TxLogPort;
  queues: ParticipantQueuesPort;
  workflow: WorkflowPort;
  /** Business metrics (transactions, votes, decision latency); none by default. */
  metrics?: MetricsPort;
  /** Locks the resources a request declares (`participants[].resources`), before PREPARE is sent. */
  locks?: LockService;
  now?: () => number;
  newId?: () => string;
}

export interface FinalizeOutcome {
  /** False when another Finalize got there first. */
  finalized: boolean;
  status: 'COMMITTED' | 'ABORTED';
  /** Coordinator-held locks released (declared resources only). */
  released: string[];
  releaseError?: Error;
}

export type StartOutcome =
  | { kind: 'started'; txId: string; status: TxRecord['status']; replayed: boolean }
  | { kind: 'invalid'; errors: FieldError[] }
  | { kind: 'idempotency-conflict'; txId: string };

export interface DispatchEvent {
  txId: string;
  phase: Phase;
  taskToken: string;
}

export class Coordinator {
  private readonly now: () => number;
  private readonly newId: () => string;
  private readonly metrics: MetricsPort;

  constructor(private readonly deps: CoordinatorDeps) {
    this.now = deps.now ?? systemClock;
    this.newId = deps.newId ?? systemIds;
    this.metrics = deps.metrics ?? noMetrics;
  }

  /**
   * POST /transactions. Validation writes nothing. With an idempotency key, the key is claimed
   * first (pointing at the new id), so a retry after any crash finds and finishes the same
   * transaction: the record write and the execution start are both idempotent by id.
   */
  async start(body: unknown, idempotencyKey?: string): Promise<StartOutcome> {
    const { config, log } = this.deps;
    const valid = validateStartRequest(body, Object.keys(config.participantQueues), config.defaults);
    if (!valid.ok) return { kind: 'invalid', errors: valid.errors };
    const requestHash = hashRequest(valid.value);
    let txId = this.newId();
    let replayed = false;
    if (idempotencyKey !== undefined) {
      const claim = await log.claimIdempotencyKey(idempotencyKey, txId, requestHash, this.isoNow());
      if (claim.requestHash !== requestHash) return { kind: 'idempotency-conflict', txId: claim.txId };
      replayed = claim.txId !== txId;
      txId = claim.txId;
    }
    const record = newTransaction({
      txId,
      request: valid.value,
      nowMs: this.now(),
      requestHash,
      ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
    });
    const created = await log.create(record);
    if (created) this.metrics.count(METRIC.TransactionsStarted);
    const current = created ? record : await log.get(txId);
    if (!current) throw new Error(`transaction ${txId} is neither creatable nor readable`);
    if (current.requestHash !== requestHash) throw new Error(`transaction id ${txId} collides with another request`);
    // Start only while nothing can have been sent yet; a replay of a decided transaction is
    // answered from the record. Same-name starts are idempotent, so a replay may start again.
    if (current.status === 'PREPARING') await this.startExecution(current, created);
    return { kind: 'started', txId, status: current.status, replayed };
  }

  async get(txId: string): Promise<TxView | undefined> {
    const record = await this.deps.log.get(txId);
    return record ? toView(record) : undefined;
  }

  list(limit: number, cursor?: string): Promise<ListPage> {
    return this.deps.log.list(limit, cursor);
  }

  /**
   * The body of every waitForTaskToken task: remember the token, send the phase's messages to
   * whoever has not answered, and complete the task at once if nobody is left to wait for
   * (a retried attempt after the last reply, or a decision someone else already made).
   */
  async dispatch({ txId, phase, taskToken }: DispatchEvent): Promise<void> {
    const { log, workflow } = this.deps;
    const stored = await log.storeTaskToken(txId, phase, taskToken, this.isoNow());
    const record = stored.record;
    if (!record) throw new Error(`dispatch ${phase}: transaction ${txId} does not exist`);
    if (!stored.applied) {
      // The record moved past this phase: answer with what it is now so the state machine routes on.
      await workflow.signal(taskToken, this.resultFor(phase, record));
      return;
    }
    const attempt = (record[`${phase.toLowerCase()}Attempts` as keyof TxRecord] as number | undefined) ?? 1;
    if (phase === 'PREPARE') {
      const result = tally(record);
      if (result) {
        await workflow.signal(taskToken, result);
        return;
      }
      if (!(await this.lockDeclared(record, taskToken))) return;
      const prepares = awaitingVote(record).map((p) => this.message('PREPARE', record, p.service, record.prepareDeadlineAt, attempt, p.operation));
      await this.deps.queues.send(prepares);
      this.metrics.count(METRIC.MessagesSent, prepares.length);
      return;
    }
    // The first dispatch of phase two is where a Lambda first sees the decision (the state
    // machine's Decide writes it directly): count each decision here, once per transaction.
    if (attempt === 1) this.countDecision(phase, record);
    const deadlineAt = this.now() + record.timeouts.commitSeconds * 1000;
    const recipients = mutated('phaseTwoGivesUp') && attempt > 2 ? [] : awaitingAck(record);
    const messages = recipients.map((service) => this.message(phase, record, service, deadlineAt, attempt));
    await this.deps.queues.send(messages);
    this.metrics.count(METRIC.MessagesSent, recipients.length);
    const done = signalAfterAck(record, this.now(), this.deps.config.retentionDays);
    if (done) await workflow.signal(taskToken, done);
    else if (attempt >= IN_DOUBT_AFTER_ATTEMPTS && !record.inDoubtSince) await this.markInDoubt(record, phase, messages, attempt);
  }

  /**
   * The first time phase two has been sent IN_DOUBT_AFTER_ATTEMPTS times without every ACK: log who
   * is in doubt (once, a conditional write), and put a copy of the message each of them has not
   * acknowledged in its DLQ with the reason, so the DLQ alarm calls an operator. Re-sending goes on.
   */
  private async markInDoubt(record: TxRecord, phase: 'COMMIT' | 'ABORT', messages: ParticipantMessage[], attempt: number): Promise<void> {
    const doubtful = new Set(awaitingAck(record));
    if (doubtful.size === 0) return;
    const at = this.isoNow();
    const marked = await this.deps.log.markInDoubt(record.txId, phase, Object.fromEntries([...doubtful].map((p) => [p, at])));
    if (!marked.applied) return;
    this.metrics.count(METRIC.ParticipantsInDoubt, doubtful.size);
    const reason =
      `in doubt: no ${phase} acknowledgement after ${attempt} sends; the decision is ${phase} and the coordinator keeps ` +
      `re-sending it to the request queue (this is a copy for operators: redriving it is harmless)`;
    await this.deps.queues.deadLetter(
      messages.filter((m) => doubtful.has(m.participant)),
      reason,
    );
  }

  /**
   * Take the declared resources' locks, exclusively, in one canonical (sorted) order, so that
   * transactions that declare their resources never deadlock among themselves. Re-entrant, so a
   * retried dispatch passes through the ones it holds. False when the transaction ends instead
   * (aborted while waiting, or the prepare deadline passed): the task was completed with ABORT.
   */
  private async lockDeclared(record: TxRecord, taskToken: string): Promise<boolean> {
    const resources = declaredResources(record);
    if (resources.length === 0) return true;
    const locks = this.deps.locks;
    if (!locks) throw new Error(`transaction ${record.txId} declares resources, but this coordinator has no lock service (LOCK_TABLE)`);
    const owner: OwnerRef = { kind: 'tx', id: record.txId };
    // The lease covers the undecided window; after the decision the log protects a COMMITTING owner,
    // and an aborted or finished one may lose its locks once the lease has run out.
    const leaseMs = Math.min(LOCK_LIMITS.maxLeaseMs, Math.max(LOCK_LIMITS.minLeaseMs, record.prepareDeadlineAt - this.now() + LOCK_DEADLINE_GRACE_MS));
    for (const resource of resources) {
      const waitMs = Math.max(0, Math.min(DISPATCH_LOCK_WAIT_MS, record.prepareDeadlineAt - this.now()));
      try {
        await locks.acquire({ resource, owner, mode: 'X', scope: COORDINATOR_LOCK_SCOPE, leaseMs, waitMs });
      } catch (err) {
        if (err instanceof TransactionAbortedError) {
          const current = await this.deps.log.get(record.txId);
          if (current) await this.deps.workflow.signal(taskToken, this.resultFor('PREPARE', current));
          return false;
        }
        if (!(err instanceof LockWaitTimeoutError)) throw err;
        // Before the deadline the state machine retries Prepare (a new dispatch waits again).
        if (this.now() < record.prepareDeadlineAt - 1_000) throw err;
        await this.deps.workflow.signal(taskToken, { outcome: 'ABORT', status: 'ABORTING', reason: `could not lock ${resource} before the prepare deadline` });
        return false;
      }
    }
    return true;
  }

  /**
   * The Finalize step, the execution's last: make the phase-two status final (a conditional write:
   * a repeat reads the record instead), then free what the coordinator locked for the transaction's
   * declared resources. A release that fails is reported, not thrown: the transaction is finished,
   * so once those leases run out anyone may take the locks over.
   */
  async finalize(txId: string, result: PhaseTwoResult): Promise<FinalizeOutcome> {
    const { applied, record } = await this.deps.log.finalize(txId, result, this.isoNow());
    if (!record) throw new Error(`finalize: transaction ${txId} does not exist`);
    if (record.status !== 'COMMITTED' && record.status !== 'ABORTED') {
      // The condition failed on a record still open: the result names the other phase. A bug, not a race.
      throw new Error(`finalize: transaction ${txId} is ${record.status}, not ${result.from}`);
    }
    if (declaredResources(record).length === 0 || !this.deps.locks) return { finalized: applied, status: record.status, released: [] };
    try {
      const released = await this.deps.locks.releaseAll({ kind: 'tx', id: txId }, COORDINATOR_LOCK_SCOPE);
      return { finalized: applied, status: record.status, released };
    } catch (err) {
      return { finalized: applied, status: record.status, released: [], releaseError: err as Error };
    }
  }

  /** One message from the reply queue. Duplicates and late replies are expected and harmless. */
  async onReply(message: ReplyMessage): Promise<void> {
    if (message.type === 'VOTE') await this.onVote(message);
    else await this.onAck(message);
  }

  private async onVote(message: VoteMessage): Promise<void> {
    const { log, workflow } = this.deps;
    const entry = { vote: message.vote, at: this.isoNow(), ...(message.reason ? { reason: message.reason } : {}) };
    const { applied, record } = await log.recordVote(message.txId, message.participant, entry);
    if (applied) this.metrics.count(METRIC.VotesRecorded);
    if (!record) {
      // Presumed abort: no record means no commit can ever happen; release a YES voter now.
      if (message.vote === 'YES') await this.sendAbort(message.txId, message.participant);
      return;
    }
    if (record.status === 'PREPARING') {
      // The writer that decided the tally wakes the execution. A redelivered vote re-signals
      // when the tally is decided, in case the first writer crashed between write and signal:
      // the task token makes a second SendTaskSuccess a harmless TaskDoesNotExist.
      const signal = applied ? signalAfterVote(record, message.participant) : tally(record);
      if (signal && record.taskToken && record.taskPhase === 'PREPARE') await workflow.signal(record.taskToken, signal);
      return;
    }
    // Aborted from outside the state machine (deadlock detector, an expired lock lease, the
    // sweeper) while the execution still waits in Prepare: wake it now rather than at the prepare
    // timeout. A token that no longer waits answers TaskDoesNotExist, which signal() ignores.
    if (record.status === 'ABORTING' && record.taskPhase === 'PREPARE' && record.taskToken) {
      await workflow.signal(record.taskToken, this.resultFor('PREPARE', record));
    }
    // A YES that was never recorded arrived after an abort decision (say, after the prepare
    // timeout): the participant holds resources for a transaction that will never commit.
    const aborting = record.status === 'ABORTING' || record.status === 'ABORTED';
    if (aborting && message.vote === 'YES' && record.votes[message.participant] === undefined && !mutated('noAbortToSilent')) {
      await this.sendAbort(record.txId, message.participant);
    }
  }

  private async onAck(message: AckMessage): Promise<void> {
    const { log, workflow, config } = this.deps;
    const { applied, record } = await log.recordAck(message.txId, message.participant, { phase: message.phase, at: this.isoNow() });
    if (applied) this.metrics.count(METRIC.AcksRecorded);
    if (!record || (!applied && record.acks[message.participant] === undefined)) return;
    const done = signalAfterAck(record, this.now(), config.retentionDays);
    if (done && record.taskToken && record.taskPhase === message.phase) await workflow.signal(record.taskToken, done);
  }

  private resultFor(phase: Phase, record: TxRecord): unknown {
    if (phase === 'PREPARE') {
      const status = record.status === 'COMMITTING' || record.status === 'COMMITTED' ? 'COMMITTING' : 'ABORTING';
      return {
        outcome: STATUS_PHASE[status],
        status,
        reason: record.decisionReason ?? `decided elsewhere (${record.status})`,
      };
    }
    const from = record.status === 'COMMITTING' || record.status === 'COMMITTED' ? 'COMMITTING' : 'ABORTING';
    return phaseTwoResult(from, this.now(), this.deps.config.retentionDays);
  }

  private async startExecution(record: TxRecord, createdNow: boolean): Promise<void> {
    const arn = this.deps.config.stateMachineArn;
    if (!arn) throw new Error('STATE_MACHINE_ARN is not set for this function');
    try {
      // The record names its execution: the txId, or `<txId>-r<n>` once recovery replaced it (a
      // replayed start then finds that execution, or ExecutionAlreadyExists, and starts nothing new).
      await this.deps.workflow.start(arn, record.executionName ?? record.txId, executionInput(record));
    } catch (err) {
      // The client gets an error; the transaction must still end. Decide ABORT with the same
      // conditional write as the state machine's Decide: if the start did happen after all, that
      // execution reads this decision and runs the abort phase; if not, recovery does.
      if (createdNow) await this.deps.log.decideAbort(record.txId, `the workflow could not start: ${(err as Error).name}`, this.isoNow());
      throw err;
    }
  }

  private async sendAbort(txId: string, participant: string): Promise<void> {
    await this.deps.queues.send([this.message('ABORT', { txId }, participant, this.now(), 1)]);
    this.metrics.count(METRIC.MessagesSent);
  }

  private countDecision(phase: 'COMMIT' | 'ABORT', record: TxRecord): void {
    this.metrics.count(phase === 'COMMIT' ? METRIC.TransactionsCommitted : METRIC.TransactionsAborted);
    const latencyMs = Date.parse(record.decidedAt ?? '') - Date.parse(record.createdAt);
    if (Number.isFinite(latencyMs) && latencyMs >= 0) this.metrics.milliseconds(METRIC.DecisionLatency, latencyMs);
  }

  private message(
    type: ParticipantMessage['type'],
    record: Pick<TxRecord, 'txId'>,
    participant: string,
    deadlineAt: number,
    attempt: number,
    operation?: unknown,
  ): ParticipantMessage {
    return { v: 1, type, txId: record.txId, participant, deadlineAt, attempt, ...(type === 'PREPARE' ? { operation } : {}) };
  }

  private isoNow(): string {
    return new Date(this.now()).toISOString();
  }
}

/** A stable hash of the validated request: key order in the client's JSON does not matter. */
export function hashRequest(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** What the Lambda adapters log through (Powertools' Logger fits). */
export interface HandlerLogger {
  debug(message: string, ...extra: unknown[]): void;
  warn(message: string, ...extra: unknown[]): void;
  error(message: string, ...extra: unknown[]): void;
  appendKeys(keys: Record<string, unknown>): void;
  resetKeys(): void;
}

const dispatchEvent = z.union([
  z.object({
    txId: z.string().min(1),
    phase: z.enum(['PREPARE', 'COMMIT', 'ABORT']),
    taskToken: z.string().min(1),
  }),
  // The Finalize step, last of every execution: a plain invocation, no task token.
  z.object({
    txId: z.string().min(1),
    phase: z.literal('FINALIZE'),
    result: z.object({
      from: z.enum(['COMMITTING', 'ABORTING']),
      final: z.enum(['COMMITTED', 'ABORTED']),
      expiresAt: z.number().int().positive(),
    }),
  }),
]);

/** The dispatch function's body: one task of the state machine (Prepare, Commit, Abort, Finalize). */
export async function dispatchTask(coordinator: Coordinator, event: unknown, logger: HandlerLogger): Promise<void> {
  const parsed = dispatchEvent.safeParse(event);
  // Only the state machine calls this function: a malformed event is a deployment bug. Failing
  // the task lets the state machine's Catch decide (abort in Prepare, retry in phase two).
  if (!parsed.success) throw new Error(`dispatch event is malformed: ${parsed.error.message}`);
  // Every log line of this invocation names the transaction; the keys go when it ends, so that a
  // warm container (or the embedded stack, where all handlers share one logger) never carries them on.
  logger.appendKeys({ txId: parsed.data.txId, phase: parsed.data.phase });
  try {
    if (parsed.data.phase === 'FINALIZE') {
      const outcome = await coordinator.finalize(parsed.data.txId, parsed.data.result);
      if (outcome.releaseError) logger.warn('finalized, but could not release the coordinator-held locks; their leases will free them', { error: outcome.releaseError });
      logger.debug('finalized', { status: outcome.status, finalized: outcome.finalized, released: outcome.released });
      return;
    }
    await coordinator.dispatch(parsed.data);
    logger.debug('dispatched');
  } finally {
    logger.resetKeys();
  }
}

/** The reply function's body: a batch from the reply queue; the items that failed are redelivered. */
export async function replyBatch(
  coordinator: Coordinator,
  records: readonly { messageId: string; body: string }[],
  logger: Pick<HandlerLogger, 'error'>,
): Promise<{ batchItemFailures: { itemIdentifier: string }[] }> {
  const failures: { itemIdentifier: string }[] = [];
  await Promise.all(
    records.map(async (record) => {
      const parsed = parseMessage(replyMessage, record.body);
      if (!parsed.ok) {
        // Never crash the batch: report the item, which SQS redelivers until its DLQ takes it.
        logger.error('malformed reply message', { messageId: record.messageId, reason: parsed.reason });
        failures.push({ itemIdentifier: record.messageId });
        return;
      }
      try {
        await coordinator.onReply(parsed.value);
      } catch (err) {
        logger.error('reply failed', { messageId: record.messageId, txId: parsed.value.txId, error: err as Error });
        failures.push({ itemIdentifier: record.messageId });
      }
    }),
  );
  return { batchItemFailures: failures };
}
