// The ports: every side effect the use cases (coordinator, recovery, lock service, deadlock
// detector, participant runner) depend on. src/aws implements them over the AWS SDK; src/memory
// implements them in memory with exactly the same conditional semantics (the simulation in
// test/sim runs the real use cases on those); test/contract runs one suite against both.
// Types only: no I/O here.
import type { DecisionAnswer, ExecutionState } from './recovery';
import type { LockItem } from './locks';
import type { BarrierRecord, StoredBarrier } from './barrier';
import type { ParticipantMessage, ReplyMessage } from './messages';
import type { AckEntry, Phase, PhaseTwoResult, TxRecord, TxStatus, VoteEntry } from './transaction';

// ---------------------------------------------------------------------------------------------
// Time, ids, randomness, waiting. Product code takes these instead of Date.now, Math.random,
// randomUUID and raw timers (a lint rule enforces it), so a seed replays a run exactly.

/** Epoch milliseconds by this host's clock (hosts' clocks may differ). */
export type Clock = () => number;
/** A fresh unique id (a UUID in production). */
export type IdSource = () => string;
/** A uniform number in [0, 1). */
export type RandomSource = () => number;
/** Resolves after `ms` of this host's time; rejects with the signal's reason when aborted. */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

/** A scheduled callback; cancel() after it ran, or twice, is a no-op. */
export interface Timer {
  cancel(): void;
}

/**
 * Time for what AWS runs for us (queue visibility, Step Functions waits, retries and task
 * timeouts): real time in production, virtual time in the simulation, where whoever drives the
 * clock fires callbacks in (time, scheduling order) so a seed replays a run exactly.
 */
export interface Timers {
  /** Epoch milliseconds. */
  now(): number;
  /** Run `callback` once at `timeMs` (epoch ms; a time in the past runs at the next turn). */
  at(timeMs: number, callback: () => void): Timer;
}

// ---------------------------------------------------------------------------------------------
// The transaction log

export interface WriteResult {
  /** True when this call's write happened; false when the condition failed (duplicate or moved on). */
  applied: boolean;
  /** The record after the write, or as it is now when the write did not apply; undefined if absent. */
  record: TxRecord | undefined;
}

export interface IdempotencyRecord {
  pk: string;
  txId: string;
  requestHash: string;
  createdAt: string;
}

export interface ListPage {
  items: Pick<TxRecord, 'txId' | 'status' | 'createdAt' | 'updatedAt' | 'decision' | 'decisionReason'>[];
  nextCursor?: string;
}

export interface StalePage {
  items: Pick<TxRecord, 'txId' | 'status' | 'updatedAt' | 'prepareDeadlineAt'>[];
  nextKey?: Record<string, unknown>;
}

/** The durable transaction log: each state change is one conditional write on one record. */
export interface TxLogPort {
  /** Write the first record; false if a record with this id exists already. */
  create(record: TxRecord): Promise<boolean>;
  /** Strongly consistent. */
  get(txId: string): Promise<TxRecord | undefined>;
  recordVote(txId: string, participant: string, entry: VoteEntry): Promise<WriteResult>;
  recordAck(txId: string, participant: string, entry: AckEntry): Promise<WriteResult>;
  storeTaskToken(txId: string, phase: Phase, taskToken: string, at: string): Promise<WriteResult>;
  finalize(txId: string, result: PhaseTwoResult, at: string): Promise<WriteResult>;
  markInDoubt(txId: string, phase: 'COMMIT' | 'ABORT', since: Record<string, string>): Promise<WriteResult>;
  decideAbort(txId: string, reason: string, at: string): Promise<WriteResult>;
  /** Open transactions not updated since `beforeIso`, oldest first (eventually consistent). */
  listStale(beforeIso: string, limit: number, startKey?: Record<string, unknown>): Promise<StalePage>;
  claimRecovery(txId: string, seen: { executionName: string; recoveries: number }, next: { executionName: string; at: string }): Promise<WriteResult>;
  /** Most recent first; the cursor is opaque to clients. */
  list(limit: number, cursor?: string): Promise<ListPage>;
  /** Claim an idempotency key for a transaction id; answers the existing claim if there is one. */
  claimIdempotencyKey(key: string, txId: string, requestHash: string, at: string): Promise<IdempotencyRecord>;
}

// ---------------------------------------------------------------------------------------------
// Queues and the workflow

/** The coordinator's side of the participants' request queues. */
export interface ParticipantQueuesPort {
  send(messages: ParticipantMessage[]): Promise<void>;
  /** A copy of each message into its participant's DLQ with the reason; answers the participants that have none. */
  deadLetter(messages: ParticipantMessage[], reason: string): Promise<string[]>;
}

/** A participant's side of the coordinator's reply queue. */
export interface ReplySender {
  send(message: ReplyMessage): Promise<void>;
}

/** Step Functions as the coordinator uses it. */
export interface WorkflowPort {
  /** Idempotent by name: a same-name start is no error and starts nothing new. */
  start(stateMachineArn: string, name: string, input: unknown): Promise<void>;
  /** Complete a waiting task; false when its task is gone (completed, timed out, retried). */
  signal(taskToken: string, output: unknown): Promise<boolean>;
  describe(executionArn: string): Promise<ExecutionState>;
}

// ---------------------------------------------------------------------------------------------
// Locks

export interface DeadlockRecord {
  id: string;
  createdAt: string;
  victim: string;
  cycle: string[];
  edges: { waiter: string; holder: string; resource: string }[];
  trigger: 'schedule' | 'on-demand';
}

export interface DeadlockPage {
  items: DeadlockRecord[];
  nextCursor?: string;
}

/** The lock table: one item per resource, written whole on the version that was read. */
export interface LockStorePort {
  /** The item as it is now (strongly consistent); version 0 when it does not exist. */
  get(resource: string): Promise<LockItem>;
  /** Store `next` if the stored version is still `expectedVersion`; false if it moved on. */
  put(next: LockItem, expectedVersion: number, nowMs: number): Promise<boolean>;
  /** Every item that has waiters (eventually consistent). */
  waiting(): Promise<LockItem[]>;
  addHeld(owner: string, scope: string, resource: string, nowMs: number): Promise<void>;
  held(owner: string, scope: string): Promise<string[]>;
  forgetHeld(owner: string, scope: string, resources: string[]): Promise<void>;
  /** False when a record with this id exists already. */
  putDeadlock(record: DeadlockRecord, nowMs: number): Promise<boolean>;
  listDeadlocks(limit: number, cursor?: string): Promise<DeadlockPage>;
}

// ---------------------------------------------------------------------------------------------
// The participant's barrier

export interface UnsettledBarrier {
  txId: string;
  state: 'PREPARING' | 'PREPARED' | 'ABORTED';
  vote?: 'YES' | 'NO' | 'READ_ONLY';
  updatedAtMs: number;
}

/** Barrier records of one participant, one per txId, written whole on the revision that was read. */
export interface BarrierStorePort {
  read(txId: string): Promise<StoredBarrier>;
  /** Writes `next` if the stored revision is still `expectedRev` (0: no record yet); false if it moved on. */
  write(txId: string, expectedRev: number, next: BarrierRecord, nowMs: number): Promise<boolean>;
  /** Records a crash may have left half done (see BarrierStore.scanUnsettled). */
  scanUnsettled(sinceMs: number, maxPages?: number): Promise<UnsettledBarrier[]>;
}

/** Where a participant in doubt reads the coordinator's decision. */
export interface DecisionSourcePort {
  read(txId: string): Promise<DecisionAnswer>;
}

export type { TxStatus };
