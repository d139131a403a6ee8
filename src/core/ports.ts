// The ports: every side effect the use cases (coordinator, recovery, lock service, deadlock
// detector, participant runner) depend on. src/aws implements them over the AWS SDK; src/memory
// implements them in memory with exactly the same conditional semantics (the simulation in
// test/sim runs the real use cases on those); test/contract runs one suite against both.
// Types only: no I/O here.
import type { DecisionAnswer, ExecutionState } from './recovery';
import type { LockItem } from './locks';
import type { BarrierRecord, BarrierWriteResult, StoredBarrier } from './barrier';
import type { ParticipantMessage, ReplyMessage } from './messages';
import type { AckEntry, OpsRecord, PhaseTwoResult, ReleaseEntry, TxRecord, VoteEntry } from './transaction';
import type { GroupRecord } from './log-transitions';

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
  /** Epoch seconds (TTL): kept beyond its record; pushed past the record's own expiry when it finishes. */
  expiresAt?: number;
  /** Set when its transaction finished: with the record gone, a replay answers 410 (forgotten). */
  finishedAt?: string;
}

export interface ListPage {
  items: Pick<TxRecord, 'txId' | 'status' | 'createdAt' | 'updatedAt' | 'decision' | 'decisionReason'>[];
  nextCursor?: string;
}

/** A page of one supervision group's open members, earliest deadline first (eventually consistent). */
export interface MembersPage {
  items: { txId: string; prepareDeadlineAt: number }[];
  nextKey?: Record<string, unknown>;
}

/** A page of the groups that have open members (eventually consistent), with how many each has on the page. */
export interface GroupsPage {
  groups: Record<string, number>;
  /** Members on the page whose prepare deadline is before the `overdueBefore` asked for (0 if none asked). */
  overdue: number;
  nextKey?: Record<string, unknown>;
}

/** The durable transaction log: each state change is one conditional write on one record. */
export interface TxLogPort {
  /** Write the operations item (once), then the first record; false if a record with this id exists already. */
  create(record: TxRecord, ops: OpsRecord): Promise<boolean>;
  /** Strongly consistent. */
  get(txId: string): Promise<TxRecord | undefined>;
  /** Strongly consistent; absent ids are left out. */
  getMany(txIds: readonly string[]): Promise<TxRecord[]>;
  /** The operations item, if it still exists. */
  getOps(txId: string): Promise<OpsRecord | undefined>;
  recordYes(txId: string, participant: string, entry: VoteEntry, nowMs: number): Promise<WriteResult>;
  recordNo(txId: string, participant: string, entry: VoteEntry, reason: string): Promise<WriteResult>;
  decideCommit(txId: string, at: string): Promise<WriteResult>;
  /** With `deadlinePassedAt`: a timeout abort, which also requires the deadline to have passed by that clock. */
  decideAbort(txId: string, reason: string, at: string, deadlinePassedAt?: number): Promise<WriteResult>;
  recordAck(txId: string, participant: string, entry: AckEntry): Promise<WriteResult>;
  finalize(txId: string, result: PhaseTwoResult, at: string): Promise<WriteResult>;
  markInDoubt(txId: string, phase: 'COMMIT' | 'ABORT', since: string): Promise<WriteResult>;
  park(txId: string, phase: 'COMMIT' | 'ABORT', service: string): Promise<WriteResult>;
  /** An operator's recorded release of one participant from phase two's wait (see LOG_TRANSITIONS.release). */
  release(txId: string, phase: 'COMMIT' | 'ABORT', participant: string, entry: ReleaseEntry): Promise<WriteResult>;
  /** The open members of a supervision group, through the sparse `open` index. */
  openMembers(group: string, limit: number, startKey?: Record<string, unknown>): Promise<MembersPage>;
  /** The groups with open members, through the sparse `open` index (its size is the number of open transactions). */
  openGroups(limit: number, startKey?: Record<string, unknown>, overdueBefore?: number): Promise<GroupsPage>;
  /** Most recent first, merged across the listing shards; the cursor is opaque to clients. */
  list(limit: number, cursor?: string): Promise<ListPage>;
  /** Claim an idempotency key for a transaction id; answers the existing claim if there is one. */
  claimIdempotencyKey(key: string, txId: string, requestHash: string, at: string, expiresAt: number): Promise<IdempotencyRecord>;
  /** Mark a transaction's key finished and keep it until `expiresAt`; false when the key is not (or no longer) this transaction's. */
  finishIdempotencyKey(key: string, txId: string, expiresAt: number, at: string): Promise<boolean>;
  /** Keep an open transaction's operations item and idempotency key (if any) until at least `expiresAt`. */
  keepItems(record: Pick<TxRecord, 'txId' | 'idempotencyKey'>, expiresAt: number): Promise<void>;
  /** Who supervises a group now (absent: the execution named after the group, generation 0). */
  readGroup(group: string): Promise<GroupRecord | undefined>;
  /** Claim the next supervisor generation of a group (seenGen -1: its first start); the winning record, or undefined when another claim won. */
  claimGroup(group: string, seenGen: number, at: string): Promise<GroupRecord | undefined>;
}

// ---------------------------------------------------------------------------------------------
// Queues and the workflow

/** The coordinator's side of the participants' request queues. */
export interface ParticipantQueuesPort {
  send(messages: ParticipantMessage[]): Promise<void>;
  /** A copy of each message into its participant's DLQ with the reason; answers the participants that have none. */
  deadLetter(messages: ParticipantMessage[], reason: string): Promise<string[]>;
  /** A refused reply (its body as it came) into the reply dead-letter queue with the reason and the queue's owner. */
  deadLetterReply(body: string, reason: string, owner: string): Promise<void>;
}

/** A participant's side of the coordinator's reply queue. */
export interface ReplySender {
  send(message: ReplyMessage): Promise<void>;
}

/** Step Functions as the coordinator uses it: starting and asking after group supervisors. */
export interface WorkflowPort {
  /**
   * Start an execution. Same name and same input as a running execution: no error, nothing new.
   * Answers 'exists' when the name is taken by a closed execution or another input.
   */
  start(stateMachineArn: string, name: string, input: unknown): Promise<'started' | 'exists'>;
  describe(executionArn: string): Promise<ExecutionState>;
}

// ---------------------------------------------------------------------------------------------
// Decision events (docs/events.md): what programs outside the coordinator may react to. Publishing
// never changes or delays a decision: an event is taken after the write that decided, kept in
// memory, and published in batches when the invocation's work is done; a failure is counted and
// logged, never thrown.

/** The detail types, as EventBridge rules match them (`detail-type`); the source is always `dtc`. */
export const DECISION_EVENT_TYPES = ['Transaction Decided', 'Transaction Finished', 'Participant In Doubt'] as const;

/** Every detail carries `v` (its schema version) and the transaction's id. */
export type DecisionEvent =
  | {
      detailType: 'Transaction Decided';
      detail: { v: 1; txId: string; outcome: 'COMMIT' | 'ABORT'; reason: string; decidedAt: string; participants: string[] };
    }
  | { detailType: 'Transaction Finished'; detail: { v: 1; txId: string; outcome: 'COMMIT' | 'ABORT'; finishedAt: string } }
  | {
      detailType: 'Participant In Doubt';
      /** `outcome`: the decision whose acknowledgement the participant still owes. */
      detail: { v: 1; txId: string; participant: string; outcome: 'COMMIT' | 'ABORT'; since: string };
    };

export interface DecisionEventsPort {
  /** Take an event for publishing; never throws, never waits. */
  publish(event: DecisionEvent): void;
  /** Publish every event taken so far (in batches); never throws. */
  flush(): Promise<void>;
}

/** Decision events switched off (context `decisionEvents: false`). */
export const noDecisionEvents: DecisionEventsPort = {
  publish: () => undefined,
  flush: () => Promise.resolve(),
};

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
  state: 'PREPARING' | 'PREPARED';
  vote?: 'YES' | 'NO' | 'READ_ONLY';
  updatedAtMs: number;
}

/**
 * Barrier records of one participant, one per txId, written whole on the revision that was read,
 * each write together with the user's effect (`writes`, of the store's own kind W) all or nothing.
 */
export interface BarrierStorePort<W = unknown> {
  read(txId: string): Promise<StoredBarrier>;
  /**
   * Writes `next` and `writes` atomically if the stored revision is still `expectedRev` (0: no
   * record yet): `moved` if it is not, `rejected` if a condition of `writes` failed; nothing is
   * written in either case.
   */
  write(txId: string, expectedRev: number, next: BarrierRecord, nowMs: number, writes?: readonly W[]): Promise<BarrierWriteResult>;
  /** The undecided records, for the restart scan (see BarrierStore.scanUnsettled). */
  scanUnsettled(maxPages?: number): Promise<UnsettledBarrier[]>;
}

/** Where a participant in doubt reads the coordinator's decision. */
export interface DecisionSourcePort {
  read(txId: string): Promise<DecisionAnswer>;
}

export type { TxStatus } from './transaction';
