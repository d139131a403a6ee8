// The coordinator's use cases: start a transaction, take a vote or an acknowledgement, abort on
// request, and drive a record to what it says must happen next. The last vote decides: each reply is
// one conditional write, and whoever decides sends phase two at once (there is no execution to wake).
// Decisions come from src/core (the table of state changes is the commit point); this module only
// sequences reads, conditional writes and sends.
import { createHash } from 'node:crypto';
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { SQSRecord } from 'aws-lambda';
import { systemClock, systemIds } from './aws/system';
import { type AckMessage, type ParticipantMessage, type ReplyMessage, type VoteMessage, clipReason, parseMessage, replyMessage } from './core/messages';
import { mutated } from './core/mutations';
import {
  DEFAULT_SUPERVISION,
  type FieldError,
  type SupervisionSettings,
  type TxRecord,
  type TxView,
  awaitingAck,
  decisionReasonOf,
  idSlot,
  keptUntil,
  newOps,
  newTransaction,
  noVoteReason,
  phaseTwoResult,
  readyToFinish,
  recordedReason,
  OPS_EXTRA_DAYS,
  toView,
  validateStartRequest,
} from './core/transaction';
import type { CoordinatorConfig } from './aws/config';
import { type DecisionEventsPort, type ListPage, noDecisionEvents, type ParticipantQueuesPort, type TxLogPort, type WorkflowPort } from './core/ports';
import { METRIC, noMetrics, type MetricsPort } from './metrics';
import { LOCK_LIMITS, type OwnerRef } from './core/locks';
import { type LockService, LockWaitTimeoutError, TransactionAbortedError } from './locks/service';
import { ensureSupervisor } from './supervisor';

/** How long a start waits for each declared resource's lock (the API answers well inside its 29 s). */
const START_LOCK_WAIT_MS = 5_000;
/**
 * Of the invocation's remaining time, what lock waits leave for what follows them: the abort that a
 * lock not had in time decides, and sending PREPARE or ABORT. All the waits of one start together end
 * this long before the invocation would be killed.
 */
export const START_RESERVE_MS = 2_000;
/** Coordinator-held locks outlive the prepare deadline by this much (clock skew, the decision write). */
const LOCK_DEADLINE_GRACE_MS = 5_000;
/** The lock scope of resources the coordinator holds for a transaction (released when it finishes). */
export const COORDINATOR_LOCK_SCOPE = 'coordinator';
/** Groups this instance has seen supervised (or claimed and not yet started) are remembered this many at most. */
const GROUPS_KEPT = 256;

/** Add to a bounded set of group names, forgetting the oldest. */
function remember(groups: Set<string>, group: string): void {
  groups.add(group);
  if (groups.size > GROUPS_KEPT) groups.delete(groups.values().next().value!);
}

export interface CoordinatorDeps {
  config: CoordinatorConfig;
  log: TxLogPort;
  queues: ParticipantQueuesPort;
  workflow: WorkflowPort;
  /** Business metrics (transactions, votes, decision latency); none by default. */
  metrics?: MetricsPort;
  /** Decision events (docs/events.md), taken after the write that decided; none by default. */
  events?: DecisionEventsPort;
  /** Locks the resources a request declares (`participants[].resources`), before PREPARE is sent. */
  locks?: LockService;
  now?: () => number;
  newId?: () => string;
}

export type StartOutcome =
  | { kind: 'started'; txId: string; status: TxRecord['status']; replayed: boolean }
  | { kind: 'invalid'; errors: FieldError[] }
  | { kind: 'idempotency-conflict'; txId: string }
  /** The key names a transaction that finished and has been forgotten (its record expired): 410, nothing written. */
  | { kind: 'gone'; txId: string };

export type ReleaseOutcome =
  | { kind: 'released'; record: TxRecord }
  | { kind: 'unknown' }
  /** Not a member of the transaction: the request is wrong (400). */
  | { kind: 'not-member' }
  /** Not decided yet, or the participant acknowledged, was released already, or is owed nothing (409). */
  | { kind: 'refused'; why: string; record: TxRecord };

export type AbortOutcome =
  /** ABORT is the decision (this request made it, or it was already): 202. */
  | { kind: 'aborted'; record: TxRecord; decidedNow: boolean }
  /** COMMIT is the decision, or every YES is in so it is the only one possible: 409. */
  | { kind: 'committed'; record: TxRecord }
  | { kind: 'unknown' };

export class Coordinator {
  private readonly now: () => number;
  private readonly newId: () => string;
  private readonly metrics: MetricsPort;
  private readonly events: DecisionEventsPort;
  private readonly supervision: SupervisionSettings;
  /** Groups with a supervisor started (by this instance or another's claim): no more claims here. */
  private readonly startedGroups = new Set<string>();
  /** Groups whose first start this instance claimed and has not yet made (its StartExecution failed). */
  private readonly claimedGroups = new Set<string>();
  /** The slot dealt to this instance's last new record (`idSlot`): the next takes the next one. */
  private slot?: number;

  constructor(private readonly deps: CoordinatorDeps) {
    this.now = deps.now ?? systemClock;
    this.newId = deps.newId ?? systemIds;
    this.metrics = deps.metrics ?? noMetrics;
    this.events = deps.events ?? noDecisionEvents;
    this.supervision = deps.config.supervision ?? DEFAULT_SUPERVISION;
  }

  /**
   * POST /transactions. Validation writes nothing. In order: the idempotency key's claim (pointing at
   * the new id, so a retry after any crash finds the same transaction), the operations and the
   * record (whose `og` is its place in supervision: the sparse open index), the group's supervisor,
   * the declared locks, then PREPARE. A crash between any two steps leaves nothing supervision
   * cannot find: its deadline aborts it. A replayed key whose transaction finished and whose record
   * has expired answers `gone` and writes nothing: a record is never re-created. `remainingMs` is the
   * invocation's remaining time (Lambda's `getRemainingTimeInMillis`): lock waits end within it.
   */
  async start(body: unknown, idempotencyKey?: string, remainingMs?: () => number): Promise<StartOutcome> {
    const { config, log } = this.deps;
    const valid = validateStartRequest(body, Object.keys(config.participantQueues), config.defaults);
    if (!valid.ok) return { kind: 'invalid', errors: valid.errors };
    const requestHash = hashRequest(valid.value);
    let txId = this.newId();
    let replayed = false;
    /** On a replay, the record as it is (read once: a replay writes nothing when it exists). */
    let existing: TxRecord | undefined;
    if (idempotencyKey !== undefined) {
      const claim = await log.claimIdempotencyKey(idempotencyKey, txId, requestHash, this.isoNow(), keptUntil(this.now(), config.retentionDays));
      if (claim.requestHash !== requestHash) return { kind: 'idempotency-conflict', txId: claim.txId };
      replayed = claim.txId !== txId;
      txId = claim.txId;
      if (replayed) {
        existing = await log.get(txId);
        // Finished and forgotten: the record expired, the key (kept longer) remembers it. Without
        // `finishedAt` a missing record was never created (a crash after the claim): create it now.
        if (!existing && claim.finishedAt !== undefined) return { kind: 'gone', txId };
      }
    }
    const nowMs = this.now();
    // Slots in turn, from wherever this instance's first id hashes to: its starts spread evenly
    // over the listing and supervision shards, so no group key takes more than its share.
    const slot = (this.slot = this.slot === undefined ? idSlot(txId) : this.slot + 1);
    const record = newTransaction({
      txId,
      request: valid.value,
      nowMs,
      requestHash,
      supervision: this.supervision,
      slot,
      ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
    });
    const created = existing === undefined && (await log.create(record, newOps(txId, valid.value, nowMs, config.retentionDays)));
    if (created) this.metrics.count(METRIC.TransactionsStarted);
    let current = created ? record : (existing ?? (await log.get(txId)));
    if (!current) throw new Error(`transaction ${txId} is neither creatable nor readable`);
    if (current.requestHash !== requestHash) throw new Error(`transaction id ${txId} collides with another request`);
    if (current.status === 'PREPARING' && current.og) {
      await this.superviseGroup(current.og, current);
      if (await this.lockDeclared(current, remainingMs)) {
        // Only to members still pending: a replay re-sends PREPARE to those that have not answered.
        const operations = new Map(valid.value.participants.map((p) => [p.service, p.operation]));
        const prepares = current.services
          .filter((s) => current!.pending[s])
          .map((s) => this.message('PREPARE', current!.txId, s, current!.prepareDeadlineAt, 1, operations.get(s)));
        await this.send(prepares);
      } else {
        current = (await log.get(txId)) ?? current;
      }
    }
    return { kind: 'started', txId, status: current.status, replayed };
  }

  /**
   * This coordinator for one reply batch: the same log, clock and ports, with its sends to
   * participants going to `queues` (the batch's outbox). Only replies go through it: it keeps none
   * of the starts' state (claimed groups, dealt slots).
   */
  forBatch(queues: ParticipantQueuesPort): Coordinator {
    return new Coordinator({ ...this.deps, queues });
  }

  async get(txId: string): Promise<TxView | undefined> {
    const record = await this.deps.log.get(txId);
    return record ? toView(record) : undefined;
  }

  list(limit: number, cursor?: string): Promise<ListPage> {
    return this.deps.log.list(limit, cursor);
  }

  /**
   * Make sure the group has a running supervisor, started once however many api instances see the
   * group: the first to claim the group's generation 0 (a conditional put of `grp#<group>`) starts it,
   * and every other instance leaves it to that one. A start that fails is not the request's failure:
   * the claimant tries again with its next transaction of the group, and the sweeper gives every
   * group with open members and no running supervisor one (a claimant that crashed before starting).
   */
  private async superviseGroup(group: string, starter: TxRecord): Promise<void> {
    if (this.startedGroups.has(group)) return;
    const arn = this.deps.config.stateMachineArn;
    if (!arn) throw new Error('STATE_MACHINE_ARN is not set for this function');
    try {
      const mine = this.claimedGroups.has(group) || (await this.deps.log.claimGroup(group, -1, this.isoNow())) !== undefined;
      if (mine) {
        remember(this.claimedGroups, group);
        await ensureSupervisor({ log: this.deps.log, workflow: this.deps.workflow, now: this.now }, arn, group, starter);
        this.claimedGroups.delete(group);
      }
      remember(this.startedGroups, group);
    } catch (err) {
      this.metrics.count(METRIC.SupervisorStartFailures);
      void err;
    }
  }

  /**
   * Take the declared resources' locks, exclusively, in one canonical (sorted) order, so that
   * transactions that declare their resources never deadlock among themselves. Re-entrant, so a
   * replayed start passes through the ones it holds. False when the transaction was aborted instead
   * (aborted while waiting, or a lock not had in time): ABORT is decided and phase two sent.
   */
  private async lockDeclared(record: TxRecord, remainingMs?: () => number): Promise<boolean> {
    const resources = record.resources ?? [];
    if (resources.length === 0) return true;
    const locks = this.deps.locks;
    if (!locks) throw new Error(`transaction ${record.txId} declares resources, but this coordinator has no lock service (LOCK_TABLE)`);
    const owner: OwnerRef = { kind: 'tx', id: record.txId };
    // The lease covers the undecided window; after the decision the log protects a COMMITTING owner,
    // and an aborted or finished one may lose its locks once the lease has run out.
    const leaseMs = Math.min(LOCK_LIMITS.maxLeaseMs, Math.max(LOCK_LIMITS.minLeaseMs, record.prepareDeadlineAt - this.now() + LOCK_DEADLINE_GRACE_MS));
    // One budget for all the waits, one after another: within the prepare deadline, and within the
    // invocation's remaining time less what the abort and the sends after it need.
    const budgetMs = remainingMs === undefined ? START_LOCK_WAIT_MS * resources.length : Math.min(START_LOCK_WAIT_MS * resources.length, remainingMs() - START_RESERVE_MS);
    const deadline = Math.min(record.prepareDeadlineAt, this.now() + budgetMs);
    for (const resource of resources) {
      const waitMs = Math.max(0, Math.min(START_LOCK_WAIT_MS, deadline - this.now()));
      try {
        await locks.acquire({ resource, owner, mode: 'X', scope: COORDINATOR_LOCK_SCOPE, leaseMs, waitMs });
      } catch (err) {
        if (err instanceof TransactionAbortedError) return false;
        if (!(err instanceof LockWaitTimeoutError)) throw err;
        await this.abort(record.txId, `could not lock ${resource} in time`);
        return false;
      }
    }
    return true;
  }

  /** One message from a participant's reply queue, already known to come from `message.participant`. */
  async onReply(message: ReplyMessage): Promise<void> {
    if (message.type === 'VOTE') await this.onVote(message);
    else await this.onAck(message);
  }

  private async onVote(message: VoteMessage): Promise<void> {
    const { log } = this.deps;
    const p = message.participant;
    const at = this.isoNow();
    const entry = { vote: message.vote, at, ...(message.reason ? { reason: recordedReason(message.reason) } : {}) };
    const result =
      message.vote === 'NO'
        ? await log.recordNo(message.txId, p, entry, noVoteReason(p))
        : await log.recordYes(message.txId, p, entry, this.now());
    const record = result.record;
    if (result.applied) this.metrics.count(METRIC.VotesRecorded);
    if (!record) {
      // Presumed abort: no record means no commit can ever happen; release a YES voter now.
      if (message.vote === 'YES') await this.sendTo('ABORT', message.txId, [p]);
      return;
    }
    if (!record.services.includes(p)) return; // not a member: its vote counts for nothing
    if (result.applied && message.vote === 'NO') {
      await this.decided(record);
      return;
    }
    const driven = await this.drive(record, !result.applied);
    // A YES that was never recorded, for a transaction already finished as ABORTED: the voter holds
    // resources for a transaction that will never commit (it was sent ABORT, if at all, before).
    if (driven.status === 'ABORTED' && message.vote === 'YES' && driven.votes[p] === undefined && !mutated('noAbortToSilent')) {
      await this.sendTo('ABORT', driven.txId, [p]);
    }
  }

  private async onAck(message: AckMessage): Promise<void> {
    const { applied, record } = await this.deps.log.recordAck(message.txId, message.participant, { phase: message.phase, at: this.isoNow() });
    if (applied) this.metrics.count(METRIC.AcksRecorded);
    if (!record || !record.services.includes(message.participant)) return;
    await this.drive(record, !applied);
  }

  /**
   * Do what the record says must happen now: decide COMMIT once every YES is in (whoever finds that
   * finishes it as COMMIT, even if the voter that completed the count crashed before deciding),
   * abort at the deadline, send phase two after a decision made here, re-send it when `redelivered`
   * (a duplicate reply for a decided transaction re-drives everyone still unacknowledged), and finish
   * once nobody owes an acknowledgement. Answers the record as it is after all that.
   */
  async drive(record: TxRecord, redelivered: boolean): Promise<TxRecord> {
    let current = record;
    // Twice at most: a timeout abort that lost to the last YES (its condition `ok < req` failed)
    // reads a record that now has every YES, and commits it.
    for (let round = 0; current.status === 'PREPARING' && round < 2; round++) {
      const nowMs = this.now();
      const result =
        current.ok === current.req || mutated('commitWithoutEveryYes')
          ? await this.deps.log.decideCommit(current.txId, this.isoNow())
          : nowMs >= current.prepareDeadlineAt
            ? await this.deps.log.decideAbort(current.txId, 'prepare deadline passed', this.isoNow(), nowMs)
            : undefined;
      if (!result) return current;
      if (!result.record) throw new Error(`transaction ${current.txId} vanished while open`);
      if (result.applied) return this.decided(result.record);
      current = result.record;
    }
    if (current.status !== 'COMMITTING' && current.status !== 'ABORTING') return current;
    if (readyToFinish(current)) return this.finish(current);
    if (redelivered) await this.phaseTwo(current, awaitingAck(current));
    return current;
  }

  /**
   * After a decision write this call made (a NO, a commit or abort in `drive`, an abort request):
   * count it, then finish at once when nobody may hold anything (no member owes an acknowledgement:
   * every other member voted NO), else send phase two to those that may.
   */
  private async decided(record: TxRecord): Promise<TxRecord> {
    this.countDecision(record);
    if (readyToFinish(record)) return this.finish(record);
    await this.phaseTwo(record, awaitingAck(record));
    return record;
  }

  /**
   * POST /transactions/{id}/abort, the deadlock detector and the lock service: the conditional abort
   * (only while a YES is missing), then phase two from whoever decided. Once every YES is in, COMMIT
   * is the only outcome: this finishes it as COMMIT (if its decider crashed) and answers so.
   */
  async abort(txId: string, reason: string): Promise<AbortOutcome> {
    const result = await this.deps.log.decideAbort(txId, reason, this.isoNow());
    const record = result.record;
    if (!record) return { kind: 'unknown' };
    if (result.applied) return { kind: 'aborted', record: await this.decided(record), decidedNow: true };
    const after = record.status === 'PREPARING' ? await this.drive(record, false) : record;
    return after.decision === 'ABORT' ? { kind: 'aborted', record: after, decidedNow: false } : { kind: 'committed', record: after };
  }

  /**
   * The phase-two status becomes final (a conditional write: a repeat reads the record instead), then
   * the locks the coordinator took for the declared resources are freed. A release that fails is not
   * thrown: the transaction is finished, so once those leases run out anyone may take the locks over.
   */
  async finish(record: TxRecord): Promise<TxRecord> {
    if (record.status !== 'COMMITTING' && record.status !== 'ABORTING') return record;
    const result = phaseTwoResult(record.status, this.now(), this.deps.config.retentionDays);
    // The key first: once the record is final its TTL runs, and the key must by then both outlive it
    // and say it finished (a crash between the two writes leaves the record open, so finish is redone).
    if (record.idempotencyKey !== undefined) {
      await this.deps.log.finishIdempotencyKey(record.idempotencyKey, record.txId, result.expiresAt + OPS_EXTRA_DAYS * 86_400, this.isoNow());
    }
    const { applied, record: after } = await this.deps.log.finalize(record.txId, result, this.isoNow());
    if (!after) throw new Error(`finish: transaction ${record.txId} vanished`);
    if (applied && after.decision && this.deps.config.finishEvents) {
      this.events.publish({ detailType: 'Transaction Finished', detail: { v: 1, txId: after.txId, outcome: after.decision, finishedAt: after.finishedAt ?? this.isoNow() } });
    }
    if ((after.resources?.length ?? 0) > 0 && this.deps.locks) {
      await this.deps.locks.releaseAll({ kind: 'tx', id: after.txId }, COORDINATOR_LOCK_SCOPE).catch(() => []);
    }
    return after;
  }

  /**
   * POST /transactions/{id}/release: an operator stops phase two's wait for one participant that is
   * being retired for good. Recorded on the record (who, why, when) and shown in its view; only for a
   * decided transaction, and a member that owes an acknowledgement. If nobody else owes one, the
   * transaction finishes.
   */
  async release(txId: string, participant: string, operator: string, reason: string): Promise<ReleaseOutcome> {
    const record = await this.deps.log.get(txId);
    if (!record) return { kind: 'unknown' };
    if (!record.services.includes(participant)) return { kind: 'not-member' };
    if (record.status !== 'COMMITTING' && record.status !== 'ABORTING') {
      return { kind: 'refused', why: record.status === 'PREPARING' ? `transaction ${txId} is not decided yet` : `transaction ${txId} has finished`, record };
    }
    if (!awaitingAck(record).includes(participant)) return { kind: 'refused', why: this.owesNothing(record, participant), record };
    const phase = record.decision === 'COMMIT' ? 'COMMIT' : 'ABORT';
    const result = await this.deps.log.release(txId, phase, participant, { operator, reason: recordedReason(reason), at: this.isoNow() });
    if (!result.record) throw new Error(`release: transaction ${txId} vanished`);
    if (!result.applied) return { kind: 'refused', why: this.owesNothing(result.record, participant), record: result.record };
    const after = readyToFinish(result.record) ? await this.finish(result.record) : result.record;
    return { kind: 'released', record: after };
  }

  private owesNothing(record: TxRecord, participant: string): string {
    if (record.acks[participant]) return `${participant} acknowledged ${record.acks[participant].phase}`;
    if (record.releases?.[participant]) return `${participant} was released by ${record.releases[participant].operator}`;
    if (record.status === 'COMMITTED' || record.status === 'ABORTED') return `transaction ${record.txId} has finished`;
    return `${participant} is owed no acknowledgement (it voted ${record.votes[participant]?.vote ?? 'nothing'})`;
  }

  /** Keep an open transaction's operations item and idempotency key for another retention + OPS_EXTRA_DAYS from now. */
  async keepAlive(record: Pick<TxRecord, 'txId' | 'idempotencyKey'>): Promise<void> {
    await this.deps.log.keepItems(record, keptUntil(this.now(), this.deps.config.retentionDays));
  }

  /** Send the decided phase's message to `to` (a first send: supervision's re-sends use phaseTwoAll). */
  private phaseTwo(record: TxRecord, to: readonly string[]): Promise<void> {
    return this.phaseTwoAll([{ record, to, attempt: 1 }]);
  }

  /**
   * Phase two for several decided transactions in one send (supervision's re-sends): the queues
   * adapter then sends each participant's messages together, ten to a request.
   */
  phaseTwoAll(sends: readonly { record: TxRecord; to: readonly string[]; attempt: number }[]): Promise<void> {
    return this.send(
      sends.flatMap(({ record, to, attempt }) => {
        const type = record.decision === 'COMMIT' ? 'COMMIT' : 'ABORT';
        const recipients = mutated('phaseTwoGivesUp') && attempt > 2 ? [] : to;
        const deadlineAt = this.now() + record.timeouts.commitSeconds * 1000;
        return recipients.map((p) => this.message(type, record.txId, p, deadlineAt, attempt));
      }),
    );
  }

  /**
   * Participants just marked in doubt: a copy of the message each has not acknowledged goes into its
   * request queue's DLQ with the reason, so the DLQ alarm calls an operator, and a `Participant In
   * Doubt` event each. Re-sending goes on.
   */
  async deadLetterInDoubt(record: TxRecord, to: readonly string[], attempt: number): Promise<void> {
    const type = record.decision === 'COMMIT' ? 'COMMIT' : 'ABORT';
    const since = record.inDoubtSince ?? this.isoNow();
    for (const participant of to) this.events.publish({ detailType: 'Participant In Doubt', detail: { v: 1, txId: record.txId, participant, outcome: type, since } });
    const reason =
      `in doubt: no ${type} acknowledgement after ${attempt} sends; the decision is ${type} and the coordinator keeps ` +
      `re-sending it to the request queue (this is a copy for operators: redriving it is harmless)`;
    const deadlineAt = this.now() + record.timeouts.commitSeconds * 1000;
    await this.deps.queues.deadLetter(
      to.map((p) => this.message(type, record.txId, p, deadlineAt, attempt)),
      reason,
    );
  }

  private sendTo(type: 'COMMIT' | 'ABORT', txId: string, to: readonly string[]): Promise<void> {
    const deadlineAt = this.now();
    return this.send(to.map((p) => this.message(type, txId, p, deadlineAt, 1)));
  }

  /** Every message sent to participants goes here: one send (each participant's together), counted. */
  private async send(messages: ParticipantMessage[]): Promise<void> {
    if (messages.length === 0) return;
    await this.deps.queues.send(messages);
    this.metrics.count(METRIC.MessagesSent, messages.length);
  }

  /** Once per transaction, by whoever wrote its decision: the counts, the latency and the `Transaction Decided` event. */
  private countDecision(record: TxRecord): void {
    this.metrics.count(record.decision === 'COMMIT' ? METRIC.TransactionsCommitted : METRIC.TransactionsAborted);
    if (record.decision) {
      this.events.publish({
        detailType: 'Transaction Decided',
        detail: { v: 1, txId: record.txId, outcome: record.decision, reason: decisionReasonOf(record) ?? '', decidedAt: record.decidedAt ?? this.isoNow(), participants: [...record.services] },
      });
    }
    const latencyMs = Date.parse(record.decidedAt ?? '') - Date.parse(record.createdAt);
    if (Number.isFinite(latencyMs) && latencyMs >= 0) this.metrics.milliseconds(METRIC.DecisionLatency, latencyMs);
  }

  private message(type: ParticipantMessage['type'], txId: string, participant: string, deadlineAt: number, attempt: number, operation?: unknown): ParticipantMessage {
    return { v: 1, type, txId, participant, deadlineAt, attempt, ...(type === 'PREPARE' ? { operation } : {}) };
  }

  private isoNow(): string {
    return new Date(this.now()).toISOString();
  }
}

/** A stable hash of the validated request: key order in the client's JSON does not matter. */
export function hashRequest(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('base64url');
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

/** One SQS record as the reply function gets it: the queue it came on names its sender. */
export interface ReplyRecord {
  messageId: string;
  body: string;
  eventSourceARN?: string;
  attributes?: { SenderId?: string };
}

/** Who may speak on which reply queue: queue ARN -> participant, and (optionally) participant -> allowed SQS sender ids. */
export interface ReplyAuthority {
  owners: Record<string, string>;
  senders?: Record<string, readonly string[]>;
}

/** One failed message of a batch, as Lambda's ReportBatchItemFailures reads it. */
export interface BatchItemFailure {
  itemIdentifier: string;
}

/**
 * The reply function's body: a batch from the participants' reply queues, each message on its own
 * through Powertools' BatchProcessor (in parallel; a failure is reported for that message only, and
 * a batch where all fail is reported, not thrown, so every message is redelivered alike). A
 * participant is known by the queue its message came on (its policy lets only that participant
 * send), never by the message's own field; a message naming anyone else, from an unknown queue, or
 * from a sender that is not the participant's, is dead-lettered with the reason and changes nothing.
 */
export async function replyBatch(
  coordinator: Coordinator,
  queues: ParticipantQueuesPort,
  authority: ReplyAuthority,
  records: readonly ReplyRecord[],
  logger: Pick<HandlerLogger, 'error' | 'warn'>,
  metrics: MetricsPort = noMetrics,
): Promise<{ batchItemFailures: BatchItemFailure[] }> {
  const outbox = new BatchOutbox(queues, records.length);
  const batchCoordinator = coordinator.forBatch(outbox);
  const handle = async (record: ReplyRecord): Promise<void> => {
    try {
      const parsed = parseMessage(replyMessage, record.body);
      const owner = record.eventSourceARN === undefined ? undefined : authority.owners[record.eventSourceARN];
      const refusal = !parsed.ok
        ? `malformed reply message: ${parsed.reason}`
        : owner === undefined
          ? `the reply came on a queue that belongs to no participant (${record.eventSourceARN ?? 'none'})`
          : parsed.value.participant !== owner
            ? `the reply names ${parsed.value.participant} but came on ${owner}'s reply queue`
            : !senderAllowed(authority, owner, record.attributes?.SenderId)
              ? `the reply on ${owner}'s queue was sent by ${record.attributes?.SenderId ?? 'an unknown sender'}, not by ${owner}`
              : undefined;
      if (refusal !== undefined || !parsed.ok) {
        logger.warn('reply refused', { messageId: record.messageId, reason: refusal });
        await queues.deadLetterReply(record.body, clipReason(refusal ?? 'refused'), owner ?? 'unknown');
        metrics.count(METRIC.RepliesRefused);
        return;
      }
      await batchCoordinator.onReply(parsed.value);
    } catch (err) {
      logger.error('reply failed', { messageId: record.messageId, error: err as Error });
      throw err;
    } finally {
      outbox.done();
    }
  };
  // A processor keeps the batch it works on: one per call, since invocations may run at once. In
  // parallel: the outbox sends once every handler waits on it or is done.
  const processor = new BatchProcessor(EventType.SQS);
  const response = await processPartialResponse({ Records: records as unknown as SQSRecord[] }, (r: SQSRecord) => handle(r as unknown as ReplyRecord), processor, {
    throwOnFullBatchFailure: false,
    processInParallel: true,
  });
  return { batchItemFailures: response.batchItemFailures.map((f) => ({ itemIdentifier: f.itemIdentifier })) };
}

/**
 * The messages to participants of one reply batch, sent together. A handler's send waits until every
 * handler of the batch still running is waiting on the outbox too; then all their messages go in one
 * send, in which the queues adapter puts each participant's messages ten to a request. So a batch
 * whose k votes decide k transactions of n members sends n requests (k <= 10), not k * n, and a
 * decision's phase two waits at most for the batch's slowest other reply. A send that fails fails
 * every handler that waited on it: their replies are redelivered, and a redelivered reply for a
 * decided transaction re-sends its phase two.
 */
class BatchOutbox implements ParticipantQueuesPort {
  private waiting: { messages: ParticipantMessage[]; sent: () => void; failed: (err: unknown) => void }[] = [];

  /** `running`: the batch's handlers that have not finished. */
  constructor(
    private readonly queues: ParticipantQueuesPort,
    private running: number,
  ) {}

  send(messages: ParticipantMessage[]): Promise<void> {
    return new Promise((sent, failed) => {
      this.waiting.push({ messages, sent, failed });
      this.sendIfAllWait();
    });
  }

  /** A handler of the batch has finished (whatever its outcome). */
  done(): void {
    this.running--;
    this.sendIfAllWait();
  }

  deadLetter(messages: ParticipantMessage[], reason: string): Promise<string[]> {
    return this.queues.deadLetter(messages, reason);
  }

  deadLetterReply(body: string, reason: string, owner: string): Promise<void> {
    return this.queues.deadLetterReply(body, reason, owner);
  }

  private sendIfAllWait(): void {
    if (this.waiting.length === 0 || this.waiting.length < this.running) return;
    const waiting = this.waiting;
    this.waiting = [];
    // Through a promise even if the adapter throws at once: every waiting handler must hear of it.
    Promise.resolve()
      .then(() => this.queues.send(waiting.flatMap((w) => w.messages)))
      .then(
        () => waiting.forEach((w) => w.sent()),
        (err: unknown) => waiting.forEach((w) => w.failed(err)),
      );
  }
}

function senderAllowed(authority: ReplyAuthority, owner: string, senderId: string | undefined): boolean {
  const allowed = authority.senders?.[owner];
  if (!allowed || allowed.length === 0) return true;
  // SenderId of a role session is `<role id>:<session name>`; the role's unique id identifies it.
  return senderId !== undefined && allowed.some((id) => senderId === id || senderId.startsWith(`${id}:`));
}
