// The participant's barrier: what one delivery of PREPARE / COMMIT / ABORT may do, given the barrier
// record for (participant, txId). `decide` is pure; `runBarrier` is a small interpreter over injected
// ports (store, user handlers, clock), so the same loop runs on DynamoDB and in the model tests.
//
// Rules that close the races:
// - User effects are txId-keyed and idempotent. Any effect is run before the barrier write that
//   records it, or after a write whose redelivery re-runs it, so a crash never loses one.
// - One prepare run at a time: PREPARING carries a claim (run id + lease) renewed while the run lives.
//   A concurrent duplicate waits (busy) instead of racing the owner; a crashed owner's claim expires.
// - A NO vote is recorded before the user's abort cleans the partial effect: cleaning first could
//   erase the holds of a concurrent run that is about to record YES.
// - ABORT records ABORTED first and then runs the user's abort; a redelivered ABORT re-runs it.
//   So a prepare run that lands an effect late either sees ABORTED when its own write fails (and
//   compensates) or landed before the user's abort ran (which releases it).
// - After ABORT is recorded, user prepare never starts again ("no hanging"); a run that had already
//   started compensates when its PREPARED write loses.
// One window stays open: a prepare run paused for longer than its lease (so another run took over)
// that lands its effect after a commit has begun re-creates a hold, which is then leaked (if it lands
// before COMMITTED is written) or sold a second time (by a duplicate COMMIT that read PREPARED before).
// Closing it needs a per-txId tombstone on the user's own item; the model test in
// test/unit/barrier.test.ts checks that nothing else leaks or commits twice.
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

export type BarrierMessageType = 'PREPARE' | 'COMMIT' | 'ABORT';

/** What this delivery has already done; it survives re-reads but not a crash (a crash is a new delivery). */
export interface Progress {
  prepared?: PrepareResult;
  compensated: boolean;
  committed: boolean;
}

export const NO_PROGRESS: Progress = { compensated: false, committed: false };

export interface DecideContext {
  nowMs: number;
  runId: string;
  leaseMs: number;
}

export type Step =
  | { kind: 'write'; next: BarrierRecord }
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
        return { kind: 'write', next: { state: 'PREPARED', operation: record.operation, ...progress.prepared } };
      }
      // Our claim was taken over while we ran: the new owner records a vote later, and either that
      // vote is YES (its txId-keyed effects include ours) or NO (its abort, run after, releases ours).
      if (progress.prepared) return { kind: 'done', why: 'another prepare run owns the barrier now' };
      if (record.claim.untilMs <= ctx.nowMs) return { kind: 'write', next: { ...record, claim } };
      return { kind: 'busy', retryAfterMs: record.claim.untilMs - ctx.nowMs };
    }
    case 'PREPARED':
      // A vote other than YES never leaves anything held: the user's abort follows the record (and is
      // re-run if a crash came in between), also for READ_ONLY, since an earlier run that crashed
      // may have placed effects that no phase two will ever reach.
      if (!progress.compensated && record.vote !== 'YES') return { kind: 'abort', operation: record.operation };
      return { kind: 'vote', vote: record.vote, ...(record.reason === undefined ? {} : { reason: record.reason }) };
    case 'COMMITTED':
      // Our run started before the commit and lost the race: what it placed is a stray hold that
      // the (finished) commit did not consume, so release it.
      if (progress.prepared && !progress.compensated) return { kind: 'abort', operation: record.operation };
      return { kind: 'done', why: 'already committed' };
    case 'ABORTED':
      if (record.prepareStarted && !progress.compensated) return { kind: 'abort', operation: record.operation };
      return { kind: 'vote', vote: 'NO', reason: ABORTED_REASON };
  }
}

function decideCommit(record: BarrierRecord, progress: Progress): Step {
  if (record.state === 'COMMITTED') return { kind: 'ack', phase: 'COMMIT' };
  if (record.state === 'PREPARED' && record.vote === 'YES') {
    if (!progress.committed) return { kind: 'commit', operation: record.operation };
    return { kind: 'write', next: { state: 'COMMITTED', operation: record.operation } };
  }
  // READ_ONLY prepared nothing, so there is nothing to commit; acknowledge to stay idempotent.
  if (record.state === 'PREPARED' && record.vote === 'READ_ONLY') {
    return { kind: 'write', next: { state: 'COMMITTED', operation: record.operation } };
  }
  return { kind: 'violation', reason: `COMMIT received in barrier state ${describe(record)}` };
}

function decideAbort(record: BarrierRecord, progress: Progress): Step {
  switch (record.state) {
    case 'NONE':
      return { kind: 'write', next: { state: 'ABORTED', prepareStarted: false } };
    case 'PREPARING':
    case 'PREPARED':
      return { kind: 'write', next: { state: 'ABORTED', prepareStarted: true, operation: record.operation } };
    case 'ABORTED':
      if (record.prepareStarted && !progress.compensated) return { kind: 'abort', operation: record.operation };
      return { kind: 'ack', phase: 'ABORT' };
    case 'COMMITTED':
      return { kind: 'violation', reason: 'ABORT received after COMMIT was recorded' };
  }
}

export function describe(record: BarrierRecord): string {
  return record.state === 'PREPARED' ? `PREPARED(${record.vote})` : record.state;
}

/** The claim renewal a live prepare run writes; undefined once the run no longer owns the claim. */
export function renewClaim(record: BarrierRecord, runId: string, nowMs: number, leaseMs: number): BarrierRecord | undefined {
  if (record.state !== 'PREPARING' || record.claim.runId !== runId) return undefined;
  return { ...record, claim: { runId, untilMs: nowMs + leaseMs } };
}

export interface BarrierPorts {
  read(): Promise<StoredBarrier>;
  /** Conditional on the stored rev being `expectedRev` (0: absent); false when the condition failed. */
  write(expectedRev: number, next: BarrierRecord): Promise<boolean>;
  prepare(operation: unknown): Promise<PrepareResult>;
  commit(operation: unknown): Promise<void>;
  abort(operation: unknown): Promise<void>;
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

/** Each delivery needs about six steps; more means the record keeps changing under us. */
export const MAX_BARRIER_STEPS = 32;

export interface RunOptions {
  runId: string;
  leaseMs: number;
  maxSteps?: number;
}

/** Runs one delivery to its outcome. Throws BarrierBusyError, ProtocolViolationError, or whatever a port throws. */
export async function runBarrier(type: BarrierMessageType, operation: unknown, ports: BarrierPorts, options: RunOptions): Promise<Outcome> {
  if (mutated('skipBarrier')) return withoutBarrier(type, operation, ports);
  // A PREPARE is almost always the first message for its transaction: start from "no record" and
  // let the conditional write find out otherwise, saving a read on the prepare path. Safe because
  // every write is conditional on the revision it assumes: a wrong guess is a stale read, which
  // the loop already handles by reading again.
  let stored = type === 'PREPARE' ? ABSENT : await ports.read();
  let progress = NO_PROGRESS;
  const maxSteps = options.maxSteps ?? MAX_BARRIER_STEPS;
  for (let i = 0; i < maxSteps; i++) {
    const step = decide(stored.record, type, operation, progress, { nowMs: ports.nowMs(), runId: options.runId, leaseMs: options.leaseMs });
    switch (step.kind) {
      case 'write':
        stored = (await ports.write(stored.rev, step.next)) ? { rev: stored.rev + 1, record: step.next } : await ports.read();
        break;
      case 'prepare':
        progress = { ...progress, prepared: await ports.prepare(step.operation) };
        break;
      case 'commit':
        await ports.commit(step.operation);
        progress = { ...progress, committed: true };
        break;
      case 'abort':
        await ports.abort(step.operation);
        progress = { ...progress, compensated: true };
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

/** The planted bug `skipBarrier`: the user's handlers run on every delivery, in whatever order. */
async function withoutBarrier(type: BarrierMessageType, operation: unknown, ports: BarrierPorts): Promise<Outcome> {
  if (type === 'PREPARE') {
    const { vote, reason } = await ports.prepare(operation);
    return { kind: 'vote', vote, ...(reason === undefined ? {} : { reason }) };
  }
  await (type === 'COMMIT' ? ports.commit(operation) : ports.abort(operation));
  return { kind: 'ack', phase: type };
}
