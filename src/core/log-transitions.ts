// The table of state changes of the transaction log record: for each, the status edges it may take,
// the condition it requires and what it writes, in the DSL of log-dsl.ts. The DynamoDB adapter
// (src/aws/log-store.ts), the in-memory adapter (src/memory/log.ts) and the state machine's Decide
// step (cdk/workflow.ts) all derive their writes from here: one truth per rule. Pure.
import { type Condition, type Update, and, add, attr, eq, exists, gt, le, lt, notExists, or, remove, set } from './log-dsl';
import { mutated } from './mutations';
import type { IdempotencyRecord } from './ports';
import type { OpsRecord } from './transaction';
import { type AckEntry, type Outcome, PHASE_STATUS, type PhaseTwoResult, type ReleaseEntry, type TxRecord, type TxStatus, type VoteEntry, parkingGroup, recordedReason } from './transaction';

/** A conditional write of a whole item (fails if the condition does not hold). */
export interface PutWrite {
  kind: 'put';
  condition: Condition;
  item: Record<string, unknown>;
}

/** A conditional update of an existing item. */
export interface UpdateWrite {
  kind: 'update';
  condition: Condition;
  update: readonly Update[];
}

export type LogWrite = PutWrite | UpdateWrite;

/** Which status may follow which (a status may follow itself: a write that keeps the phase). */
export const STATUS_GRAPH: Record<TxStatus, readonly TxStatus[]> = {
  PREPARING: ['PREPARING', 'COMMITTING', 'ABORTING'],
  COMMITTING: ['COMMITTING', 'COMMITTED'],
  ABORTING: ['ABORTING', 'ABORTED'],
  COMMITTED: [],
  ABORTED: [],
};

/** `null`: no record before (create). */
type Edge = readonly [TxStatus | null, TxStatus];
/** The commit point's guard: exactly one decision, made while the transaction is still preparing. */
const undecided = (): Condition =>
  mutated('decideWithoutPreparing') ? exists('status') : eq('status', 'PREPARING');
const same = (...statuses: TxStatus[]): Edge[] => statuses.map((s) => [s, s]);
/** Every member, and only a member: one whose vote is pending or recorded. */
const isMember = (participant: string): Condition => or(exists(['pending', participant]), exists(['votes', participant]));

/** Every update is on an existing record: attribute_exists(pk) keeps it from creating one. */
const onRecord = (...conditions: Condition[]): Condition => and(exists('pk'), ...conditions);
const update = (condition: Condition, ...writes: Update[]): UpdateWrite => ({ kind: 'update', condition: onRecord(condition), update: writes });
const decisionWrites = (outcome: Outcome, reason: string, at: string): Update[] => [
  set('status', PHASE_STATUS[outcome]),
  set('decision', outcome),
  set('decisionReason', recordedReason(reason)),
  set('decidedAt', at),
  set('updatedAt', at),
];

/**
 * The table. The decision conditions are the commit point (DESIGN.md, "One transaction"): a vote
 * counts only from a member whose vote is pending; COMMIT only when the record's own count of YES
 * votes equals its own number of members (attribute against attribute); ABORT on the first NO, or
 * by any other decider only while that count is short. Once every YES is recorded, COMMIT is the
 * only possible outcome. Every decider uses these: the reply path, supervision at the deadline, the
 * deadlock detector, the lock service, the API's abort request.
 */
export const LOG_TRANSITIONS = {
  /** The first record of a transaction. */
  create: {
    edges: [[null, 'PREPARING']],
    write: (record: TxRecord): PutWrite => ({ kind: 'put', condition: notExists('pk'), item: { ...record } }),
  },
  /**
   * A YES or READ_ONLY vote: once, from a member whose vote is pending, while the transaction is
   * undecided and before its deadline by the recording function's clock (`nowMs`).
   */
  recordYes: {
    edges: same('PREPARING'),
    write: (participant: string, entry: VoteEntry, nowMs: number) =>
      update(
        and(
          eq('status', 'PREPARING'),
          exists(['pending', participant]),
          ...(mutated('voteAfterDeadline') ? [] : [gt('prepareDeadlineAt', nowMs)]),
        ),
        remove(['pending', participant]),
        set(['votes', participant], entry),
        add('ok', 1),
        set('updatedAt', entry.at),
      ),
  },
  /** A NO vote, once, from a member whose vote is pending: it records the vote and decides ABORT in one write. */
  recordNo: {
    edges: [['PREPARING', 'ABORTING']],
    write: (participant: string, entry: VoteEntry, reason: string) =>
      update(
        and(eq('status', 'PREPARING'), exists(['pending', participant])),
        remove(['pending', participant]),
        set(['votes', participant], entry),
        ...decisionWrites('ABORT', reason, entry.at),
      ),
  },
  /** COMMIT: only when every member's YES is recorded, by the record's own counts. */
  decideCommit: {
    edges: [['PREPARING', 'COMMITTING']],
    write: (at: string) =>
      update(
        and(undecided(), mutated('commitWithoutEveryYes') ? gt('ok', 0) : eq('ok', attr('req'))),
        ...decisionWrites('COMMIT', 'every participant voted YES', at),
      ),
  },
  /**
   * ABORT by anyone but a NO voter (supervision at the deadline, the deadlock detector, the lock
   * service, an abort request): only while a YES is missing. A timeout abort passes its clock
   * (`deadlinePassedAt`) and also requires the deadline to have passed by it.
   */
  decideAbort: {
    edges: [['PREPARING', 'ABORTING']],
    write: (reason: string, at: string, deadlinePassedAt?: number) =>
      update(
        and(undecided(), lt('ok', attr('req')), ...(deadlinePassedAt === undefined ? [] : [le('prepareDeadlineAt', deadlinePassedAt)])),
        ...decisionWrites('ABORT', reason, at),
      ),
  },
  /** An acknowledgement, once per member, only in the phase it acknowledges. */
  recordAck: {
    edges: same('COMMITTING', 'ABORTING'),
    write: (participant: string, entry: AckEntry) =>
      update(
        and(eq('status', PHASE_STATUS[entry.phase]), isMember(participant), notExists(['acks', participant])),
        set(['acks', participant], entry),
        set('updatedAt', entry.at),
      ),
  },
  /**
   * The phase-two status becomes final, the record leaves the open index, and the TTL starts. A second
   * finish (a redelivered ACK, supervision) fails the condition and reads the record.
   */
  finalize: {
    edges: [
      ['COMMITTING', 'COMMITTED'],
      ['ABORTING', 'ABORTED'],
    ],
    write: (result: PhaseTwoResult, at: string) => {
      assertEdge('finalize', result.from, result.final);
      return update(eq('status', result.from), set('status', result.final), set('finishedAt', at), set('updatedAt', at), set('expiresAt', result.expiresAt), remove('og'));
    },
  },
  /** Once per transaction, which participants phase two found in doubt. `updatedAt` stays: doubt is not progress. */
  markInDoubt: {
    edges: same('COMMITTING', 'ABORTING'),
    write: (phase: 'COMMIT' | 'ABORT', since: string) =>
      update(and(eq('status', PHASE_STATUS[phase]), notExists('inDoubtSince')), set('inDoubtSince', since)),
  },
  /**
   * Park a decided transaction's phase two with the supervisor of the participant it waits on (a
   * participant that is down): once, while it is still open in that phase.
   */
  park: {
    edges: same('COMMITTING', 'ABORTING'),
    write: (phase: 'COMMIT' | 'ABORT', service: string) =>
      update(and(eq('status', PHASE_STATUS[phase]), exists('og'), notExists('parkedWith')), set('og', parkingGroup(service)), set('parkedWith', service)),
  },
  /**
   * An operator releases one participant from phase two's wait (it is being retired for good): once
   * per participant, only while decided and open, only for a member that has not acknowledged. The
   * first release creates the `releases` map (`hasReleases` false: it must still be absent); later
   * ones add to it. A concurrent release of another participant fails the condition: read, try again.
   */
  release: {
    edges: same('COMMITTING', 'ABORTING'),
    write: (phase: 'COMMIT' | 'ABORT', participant: string, entry: ReleaseEntry, hasReleases: boolean) =>
      update(
        and(eq('status', PHASE_STATUS[phase]), isMember(participant), notExists(['acks', participant]), hasReleases ? and(exists('releases'), notExists(['releases', participant])) : notExists('releases')),
        hasReleases ? set(['releases', participant], entry) : set('releases', { [participant]: entry }),
      ),
  },
} as const satisfies Record<string, { edges: readonly Edge[]; write: (...args: never[]) => LogWrite }>;

export type TransitionName = keyof typeof LOG_TRANSITIONS;

/** The claim of an idempotency key (its own item, `idem#<key>`): first claim wins, later ones read it. */
export function claimIdempotencyKeyWrite(item: IdempotencyRecord): PutWrite {
  return { kind: 'put', condition: notExists('pk'), item: { ...item } };
}

/** A conditional update of an item that is not a transaction record (no state change of the table). */
export interface ItemUpdate {
  pk: string;
  write: UpdateWrite;
}

/**
 * When its transaction finishes, its idempotency key is marked finished and kept past the record's
 * own expiry (`expiresAt`): a replay after the record is gone can then tell "forgotten" (410) from
 * "never created" (a crash between the claim and the record: create it). Only the claim of this
 * transaction, and never creating one (a deleted key stays deleted).
 */
export function finishIdempotencyKeyWrite(key: string, txId: string, expiresAt: number, at: string): ItemUpdate {
  return { pk: idempotencyPk(key), write: update(eq('txId', txId), set('expiresAt', expiresAt), set('finishedAt', at)) };
}

/**
 * Keep an item written beside an open record (its operations, its idempotency key) until
 * `expiresAt` (epoch seconds): never shortening it, never creating the item. `txId` is checked on
 * the idempotency key (a key is one transaction's).
 */
export function keepItemWrite(pk: string, expiresAt: number, txId?: string): ItemUpdate {
  return { pk, write: update(and(lt('expiresAt', expiresAt), ...(txId === undefined ? [] : [eq('txId', txId)])), set('expiresAt', expiresAt)) };
}

export const idempotencyPk = (key: string): string => `idem#${key}`;

/** A transaction's operations, written once, beside its record (the two puts go out together). */
export function createOpsWrite(item: OpsRecord): PutWrite {
  return { kind: 'put', condition: notExists('pk'), item: { ...item } };
}

/** Who supervises a group (its own item, `grp#<group>`), written by the group's first start (generation 0) and when a supervisor is replaced or continued. */
export interface GroupRecord {
  pk: string;
  group: string;
  /** 0 for the execution named after the group, n for `<group>-g<n>`. */
  gen: number;
  execution: string;
  at: string;
  /** Epoch seconds: TTL, GROUP_KEPT_DAYS after the claim. */
  expiresAt: number;
}

/**
 * A group's record is kept this long after its last claim: longer than Step Functions keeps a closed
 * execution's name (90 days), so while a name `<group>-g<n>` can still be taken, the record that says
 * which generation is current is still there. Once it is gone, so are the names: generation 0 again.
 */
export const GROUP_KEPT_DAYS = 120;

export const groupPk = (group: string): string => `grp#${group}`;

/** The execution name of a group's n-th supervisor (80 characters allowed; a group name has at most 47). */
export function supervisorName(group: string, gen: number): string {
  if (!Number.isInteger(gen) || gen < 0) throw new Error(`supervisor generation must be a whole number, got ${gen}`);
  return gen === 0 ? group : `${group}-g${gen}`;
}

/**
 * Claim generation `seenGen + 1` of a group's supervisor: one claimant per generation wins.
 * `seenGen` -1 claims generation 0, the group's first start (no record yet): so one api instance
 * starts a group's supervisor, however many see the group.
 */
export function claimGroupWrite(group: string, seenGen: number, at: string): PutWrite {
  if (!Number.isInteger(seenGen) || seenGen < -1) throw new Error(`claimGroupWrite: seenGen must be a whole number or -1, got ${seenGen}`);
  const gen = seenGen + 1;
  const expiresAt = Math.floor(Date.parse(at) / 1000) + GROUP_KEPT_DAYS * 86_400;
  if (!Number.isFinite(expiresAt)) throw new Error(`claimGroupWrite: at must be an ISO time, got ${at}`);
  const item: GroupRecord = { pk: groupPk(group), group, gen, execution: supervisorName(group, gen), at, expiresAt };
  const condition = seenGen === -1 ? notExists('pk') : seenGen === 0 ? or(notExists('pk'), eq('gen', 0)) : eq('gen', seenGen);
  return { kind: 'put', condition, item: { ...item } };
}

function assertEdge(name: TransitionName, from: TxStatus | null, to: TxStatus): void {
  const edges: readonly Edge[] = LOG_TRANSITIONS[name].edges;
  if (!edges.some(([f, t]) => f === from && t === to)) {
    throw new Error(`log transition ${name}: ${from ?? '(no record)'} -> ${to} is not one of its state changes`);
  }
}

/** A state change the table does not allow: a bug in the caller or the adapter, never a race. */
export class TransitionError extends Error {
  override readonly name = 'TransitionError';
}

/**
 * Assert a state change on both sides of its write. Before the write, `before` is the status the
 * caller intends to move from (what it last read or the phase it acts in; undefined if it has none):
 * the transition must start there. After a write that applied, pass the record it returned: it must
 * exist and have a status the transition may produce from `before`. Throws on a violation: that is a
 * bug in the caller or the adapter, never a race (a race fails the write's condition instead).
 */
export function assertTransition(name: TransitionName, before: TxStatus | null | undefined, ...after: [] | [Pick<TxRecord, 'status'> | undefined]): void {
  const edges: readonly Edge[] = LOG_TRANSITIONS[name].edges;
  const from = before === undefined ? edges : edges.filter(([f]) => f === before);
  if (from.length === 0) throw new TransitionError(`log transition ${name} cannot start from ${before ?? '(no record)'}`);
  if (after.length === 0) return;
  const [record] = after;
  if (!record) throw new TransitionError(`log transition ${name} applied but returned no record`);
  if (!from.some(([, to]) => to === record.status)) {
    throw new TransitionError(`log transition ${name} from ${before ?? 'any status'} produced ${record.status}; it may produce ${[...new Set(from.map(([, to]) => to))].join(' or ')}`);
  }
}

// The table must agree with the graph; checked once when the module loads.
for (const [name, { edges }] of Object.entries(LOG_TRANSITIONS)) {
  for (const [from, to] of edges as readonly Edge[]) {
    if (from === null ? to !== 'PREPARING' : !STATUS_GRAPH[from].includes(to)) {
      throw new Error(`log transition ${name}: ${from ?? '(no record)'} -> ${to} is not in STATUS_GRAPH`);
    }
  }
}
