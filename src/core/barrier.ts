// The participant's barrier: what one delivery of PREPARE / COMMIT / ABORT may do, given the barrier
// record for (participant, txId). `decide` is pure; `runBarrier` is a small interpreter over injected
// ports (store, user handlers, clock), so the same loop runs on DynamoDB and in the model tests.
//
// The rule that closes the races: the user's handlers never write. They build their effect (a list
// of writes) and the barrier applies it in ONE atomic write together with the barrier transition
// that records it, conditioned on the barrier revision this run read:
// - prepare's effect lands with PREPARING(this run's claim) -> PREPARED, so a run that lost its
//   claim (paused past its lease, taken over, or overtaken by an ABORT) changes nothing;
// - commit's effect lands with PREPARED(YES) -> COMMITTED, abort's with PREPARED(YES) -> ABORTED,
//   so neither can ever apply to a barrier the other finished, nor apply twice.
// Hence no effect ever exists without the barrier state that records it: a NO vote leaves nothing,
// ABORT on a barrier that never reached PREPARED(YES) has nothing to release, and no late, paused
// or duplicated run needs compensating.
// One prepare run at a time still: PREPARING carries a claim (run id + lease) renewed while the run
// lives, so a duplicate waits (busy) instead of doing the same work; a crashed owner's claim expires.
// After ABORT is recorded, user prepare never starts again ("no hanging").
import { mutated } from './mutations';
import type { Vote } from './messages';

export interface Claim {
  runId: string;
  untilMs: number;
}

export type BarrierRecord =
  | { state: 'NONE' }
  | { state: 'PREPARING'; operation: unknown; claim: Claim }
  | { state: 'PREPARED'; operation: unknown; vote: Vote; reason?: string }
  | { state: 'COMMITTED'; operation: unknown }
  /** `prepareStarted`: a PREPARE had claimed the record before ABORT (for diagnosis; nothing depends on it). */
  | { state: 'ABORTED'; prepareStarted: boolean; operation?: unknown };

/** A record as stored: `rev` 0 means absent; every write is conditional on the rev it read. */
export interface StoredBarrier {
  rev: number;
  record: BarrierRecord;
}

export const ABSENT: StoredBarrier = { rev: 0, record: { state: 'NONE' } };

export interface PrepareResult {
  vote: Vote;
  reason?: string;
}

/**
 * A user handler's effect: writes the barrier applies atomically with its own transition. Opaque
 * here; each store knows its kind (DynamoDB: TransactWriteItems actions; memory: check/apply pairs).
 */
export type Writes = readonly unknown[];

/** What user prepare answers: its vote, and for YES the effect to apply with PREPARED. */
export interface Prepared extends PrepareResult {
  writes: Writes;
}

export type BarrierMessageType = 'PREPARE' | 'COMMIT' | 'ABORT';

/** What this delivery has already built; it survives re-reads but not a crash (a crash is a new delivery). */
export interface Progress {
  prepared?: Prepared;
  /** The effect of user commit (or abort), built and not yet written. */
  phaseTwo?: Writes;
}

export const NO_PROGRESS: Progress = {};

export interface DecideContext {
  nowMs: number;
  runId: string;
  leaseMs: number;
}

export type Step =
  /** Write `next` on the revision read, with `writes` (if any) in the same atomic write. */
  | { kind: 'write'; next: BarrierRecord; writes?: Writes }
  | { kind: 'prepare'; operation: unknown }
  | { kind: 'commit'; operation: unknown }
  | { kind: 'abort'; operation: unknown }
  | { kind: 'vote'; vote: Vote; reason?: string }
  | { kind: 'ack'; phase: 'COMMIT' | 'ABORT' }
  | { kind: 'done'; why: string }
  | { kind: 'busy'; retryAfterMs: number }
  | { kind: 'violation'; reason: string };

export type Outcome = Extract<Step, { kind: 'vote' | 'ack' | 'done' }>;

export const ABORTED_REASON = 'transaction already aborted';

export function decide(record: BarrierRecord, type: BarrierMessageType, operation: unknown, progress: Progress, ctx: DecideContext): Step {
  switch (type) {
    case 'PREPARE':
      return decidePrepare(record, operation, progress, ctx);
    case 'COMMIT':
      return decideCommit(record, progress);
    case 'ABORT':
      return decideAbort(record, progress);
  }
}

function decidePrepare(record: BarrierRecord, operation: unknown, progress: Progress, ctx: DecideContext): Step {
  const claim = { runId: ctx.runId, untilMs: ctx.nowMs + ctx.leaseMs };
  switch (record.state) {
    case 'NONE':
      return { kind: 'write', next: { state: 'PREPARING', operation, claim } };
    case 'PREPARING': {
      if (record.claim.runId === ctx.runId) {
        if (!progress.prepared) return { kind: 'prepare', operation: record.operation };
        const { writes, ...vote } = progress.prepared;
        // Only a YES leaves an effect: NO and READ_ONLY record the vote alone.
        return { kind: 'write', next: { state: 'PREPARED', operation: record.operation, ...vote }, ...(vote.vote === 'YES' && writes.length > 0 ? { writes } : {}) };
      }
      // Our claim was taken over while we ran (nothing of ours was written): the new owner votes.
      if (progress.prepared) return { kind: 'done', why: 'another prepare run owns the barrier now' };
      if (record.claim.untilMs <= ctx.nowMs) return { kind: 'write', next: { ...record, claim } };
      return { kind: 'busy', retryAfterMs: record.claim.untilMs - ctx.nowMs };
    }
    case 'PREPARED':
      // The effect (if any) landed with this record: re-send the vote.
      return { kind: 'vote', vote: record.vote, ...(record.reason === undefined ? {} : { reason: record.reason }) };
    case 'COMMITTED':
      return { kind: 'done', why: 'already committed' };
    case 'ABORTED':
      return { kind: 'vote', vote: 'NO', reason: ABORTED_REASON };
  }
}

function decideCommit(record: BarrierRecord, progress: Progress): Step {
  if (record.state === 'COMMITTED') return { kind: 'ack', phase: 'COMMIT' };
  // READ_ONLY prepared nothing and gets no user commit: it only records COMMITTED, to stay idempotent.
  if (record.state === 'PREPARED' && record.vote !== 'NO') return finishPrepared(record, progress, { state: 'COMMITTED', operation: record.operation }, 'commit');
  // Never user commit on an aborted (or unprepared) barrier.
  return { kind: 'violation', reason: `COMMIT received in barrier state ${describe(record)}` };
}

function decideAbort(record: BarrierRecord, progress: Progress): Step {
  switch (record.state) {
    case 'NONE':
      return { kind: 'write', next: { state: 'ABORTED', prepareStarted: false } };
    case 'PREPARING':
      // A prepare run's effect lands only with PREPARED, so there is nothing to release.
      return { kind: 'write', next: { state: 'ABORTED', prepareStarted: true, operation: record.operation } };
    case 'PREPARED':
      return finishPrepared(record, progress, { state: 'ABORTED', prepareStarted: true, operation: record.operation }, 'abort');
    case 'ABORTED':
      return { kind: 'ack', phase: 'ABORT' };
    case 'COMMITTED':
      // Never user abort on a committed barrier.
      return { kind: 'violation', reason: 'ABORT received after COMMIT was recorded' };
  }
}

/**
 * Phase two on a PREPARED barrier: only a YES holds something, so only a YES runs the user's
 * `handler` (commit or abort), whose effect lands in the same write that records `next`.
 */
function finishPrepared(record: Extract<BarrierRecord, { state: 'PREPARED' }>, progress: Progress, next: BarrierRecord, handler: 'commit' | 'abort'): Step {
  if (record.vote !== 'YES') return { kind: 'write', next };
  if (!progress.phaseTwo) return { kind: handler, operation: record.operation };
  return { kind: 'write', next, ...(progress.phaseTwo.length > 0 ? { writes: progress.phaseTwo } : {}) };
}

export function describe(record: BarrierRecord): string {
  return record.state === 'PREPARED' ? `PREPARED(${record.vote})` : record.state;
}

/** The claim renewal a live prepare run writes; undefined once the run no longer owns the claim. */
export function renewClaim(record: BarrierRecord, runId: string, nowMs: number, leaseMs: number): BarrierRecord | undefined {
  if (record.state !== 'PREPARING' || record.claim.runId !== runId) return undefined;
  return { ...record, claim: { runId, untilMs: nowMs + leaseMs } };
}

/**
 * How an atomic barrier write ended: `written`; `moved` (the barrier is no longer at the revision
 * read, so nothing was written: re-read); or `rejected` (the barrier was as read, but a condition
 * of the user's effect failed, so nothing was written either).
 */
export type BarrierWriteResult = { kind: 'written' } | { kind: 'moved' } | { kind: 'rejected'; reason: string };

export interface BarrierPorts {
  read(): Promise<StoredBarrier>;
  /**
   * Writes `next` and the user's `writes` all or nothing, conditional on the stored rev being
   * `expectedRev` (0: absent).
   */
  write(expectedRev: number, next: BarrierRecord, writes: Writes): Promise<BarrierWriteResult>;
  /** User prepare: the vote and, for YES, the effect to write with PREPARED. */
  prepare(operation: unknown): Promise<Prepared>;
  /** User commit: the effect to write with COMMITTED. */
  commit(operation: unknown): Promise<Writes>;
  /** User abort: the effect (releasing what prepare held) to write with ABORTED. */
  abort(operation: unknown): Promise<Writes>;
  nowMs(): number;
}

export class BarrierBusyError extends Error {
  constructor(readonly retryAfterMs: number) {
    super(`another prepare run holds the barrier for ${retryAfterMs} ms more`);
    this.name = 'BarrierBusyError';
  }
}

/** The coordinator sent something 2PC forbids; the message must not be acknowledged. */
export class ProtocolViolationError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ProtocolViolationError';
  }
}

/**
 * A commit or abort effect whose own conditions failed on a barrier that is PREPARED(YES): the
 * participant's data does not hold what its prepare wrote. Nothing was written; the message is
 * retried and, if it keeps failing, dead-lettered for a person to look at.
 */
export class EffectRejectedError extends Error {
  constructor(phase: 'COMMIT' | 'ABORT', reason: string) {
    super(`${phase} effect rejected by its own conditions: ${reason}`);
    this.name = 'EffectRejectedError';
  }
}

/** Each delivery needs about six steps; more means the record keeps changing under us. */
export const MAX_BARRIER_STEPS = 32;
/**
 * A prepare effect whose conditions fail was built from data that changed since user prepare read
 * it: prepare runs again on fresh data, this many times at most, and then votes NO.
 */
export const MAX_PREPARE_ATTEMPTS = 3;

export interface RunOptions {
  runId: string;
  leaseMs: number;
  maxSteps?: number;
}

/** Runs one delivery to its outcome. Throws BarrierBusyError, ProtocolViolationError, EffectRejectedError, or whatever a port throws. */
export async function runBarrier(type: BarrierMessageType, operation: unknown, ports: BarrierPorts, options: RunOptions): Promise<Outcome> {
  if (mutated('skipBarrier')) return withoutBarrier(type, operation, ports);
  // A PREPARE is almost always the first message for its transaction: start from "no record" and
  // let the conditional write find out otherwise, saving a read on the prepare path. Safe because
  // every write is conditional on the revision it assumes: a wrong guess is a stale read, which
  // the loop already handles by reading again.
  let stored = type === 'PREPARE' ? ABSENT : await ports.read();
  let progress = NO_PROGRESS;
  let prepareAttempts = 0;
  const maxSteps = options.maxSteps ?? MAX_BARRIER_STEPS;
  for (let i = 0; i < maxSteps; i++) {
    const step = decide(stored.record, type, operation, progress, { nowMs: ports.nowMs(), runId: options.runId, leaseMs: options.leaseMs });
    switch (step.kind) {
      case 'write': {
        const result = await ports.write(stored.rev, step.next, step.writes ?? []);
        if (result.kind === 'written') stored = { rev: stored.rev + 1, record: step.next };
        else if (result.kind === 'moved') stored = await ports.read();
        else if (type !== 'PREPARE') throw new EffectRejectedError(type, result.reason);
        else if (++prepareAttempts < MAX_PREPARE_ATTEMPTS) progress = NO_PROGRESS;
        else progress = { prepared: { vote: 'NO', reason: `the prepare effect's conditions failed ${prepareAttempts} times: ${result.reason}`.slice(0, 1000), writes: [] } };
        break;
      }
      case 'prepare':
        progress = { prepared: await ports.prepare(step.operation) };
        break;
      case 'commit':
        progress = { phaseTwo: await ports.commit(step.operation) };
        break;
      case 'abort':
        progress = { phaseTwo: await ports.abort(step.operation) };
        break;
      case 'busy':
        throw new BarrierBusyError(step.retryAfterMs);
      case 'violation':
        throw new ProtocolViolationError(step.reason);
      case 'vote':
      case 'ack':
      case 'done':
        return step;
    }
  }
  throw new Error(`barrier for ${type} did not settle within ${maxSteps} steps (last state ${describe(stored.record)})`);
}

/**
 * The planted bug `skipBarrier`: every delivery runs its user handler and writes the effect with
 * its phase's record on whatever revision is stored, whatever the state.
 */
async function withoutBarrier(type: BarrierMessageType, operation: unknown, ports: BarrierPorts): Promise<Outcome> {
  const { rev } = await ports.read();
  if (type === 'PREPARE') {
    const { vote, reason, writes } = await ports.prepare(operation);
    await ports.write(rev, { state: 'PREPARED', operation, vote, ...(reason === undefined ? {} : { reason }) }, vote === 'YES' ? writes : []);
    return { kind: 'vote', vote, ...(reason === undefined ? {} : { reason }) };
  }
  const writes = await (type === 'COMMIT' ? ports.commit(operation) : ports.abort(operation));
  await ports.write(rev, type === 'COMMIT' ? { state: 'COMMITTED', operation } : { state: 'ABORTED', prepareStarted: true, operation }, writes);
  return { kind: 'ack', phase: type };
}
