// The table of state changes of the transaction log record: for each, the status edges it may take,
// the condition it requires and what it writes, in the DSL of log-dsl.ts. The DynamoDB adapter
// (src/aws/log-store.ts), the in-memory adapter (src/memory/log.ts) and the state machine's Decide
// step (cdk/workflow.ts) all derive their writes from here: one truth per rule. Pure.
import { type Condition, type Update, and, add, eq, exists, gt, notExists, or, remove, set } from './log-dsl';
import { mutated } from './mutations';
import type { IdempotencyRecord } from './ports';
import { type AckEntry, type Outcome, PHASE_STATUS, type Phase, type PhaseTwoResult, type TxRecord, type TxStatus, type VoteEntry } from './transaction';

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
  // The planted bug keeps the same values, so the synthesized Decide step still maps onto the table.
  mutated('decideWithoutPreparing') ? or(eq('status', 'PREPARING'), exists('status')) : eq('status', 'PREPARING');
const same = (...statuses: TxStatus[]): Edge[] => statuses.map((s) => [s, s]);
const OPEN = ['PREPARING', 'COMMITTING', 'ABORTING'] as const;

/** Every update is on an existing record: attribute_exists(pk) keeps it from creating one. */
const onRecord = (...conditions: Condition[]): Condition => and(exists('pk'), ...conditions);
const update = (condition: Condition, ...writes: Update[]): UpdateWrite => ({ kind: 'update', condition: onRecord(condition), update: writes });

/** What the state machine's Decide step writes. `V`: the CDK passes JSONPath-driven values instead of strings. */
export interface DecideArgs<V = never> {
  status: 'COMMITTING' | 'ABORTING' | V;
  outcome: Outcome | V;
  reason: string | V;
  at: string | V;
}

export const LOG_TRANSITIONS = {
  /** The first record of a transaction. */
  create: {
    edges: [[null, 'PREPARING']],
    write: (record: TxRecord): PutWrite => ({ kind: 'put', condition: notExists('pk'), item: { ...record } }),
  },
  /**
   * A vote, once per participant, only while the transaction is still preparing and only before its
   * prepare deadline by the recording function's clock (the vote's `at`): a vote that comes later
   * counts for nothing, however often anything was retried, and the deadline's abort follows.
   */
  recordVote: {
    edges: same('PREPARING'),
    write: (participant: string, entry: VoteEntry) =>
      update(
        and(
          eq('status', 'PREPARING'),
          notExists(['votes', participant]),
          ...(mutated('voteAfterDeadline') ? [] : [gt('prepareDeadlineAt', Date.parse(entry.at))]),
        ),
        set(['votes', participant], entry),
        set('updatedAt', entry.at),
      ),
  },
  /** An acknowledgement, once per participant, only in the phase it acknowledges. */
  recordAck: {
    edges: same('COMMITTING', 'ABORTING'),
    write: (participant: string, entry: AckEntry) =>
      update(and(eq('status', PHASE_STATUS[entry.phase]), notExists(['acks', participant])), set(['acks', participant], entry), set('updatedAt', entry.at)),
  },
  /** The task token of the phase's current attempt, only while the record is in that phase; counts attempts per phase. */
  storeTaskToken: {
    edges: same(...OPEN),
    write: (phase: Phase, taskToken: string, at: string) =>
      update(eq('status', PHASE_STATUS[phase]), set('taskToken', taskToken), set('taskPhase', phase), set('updatedAt', at), add(`${phase.toLowerCase()}Attempts`, 1)),
  },
  /**
   * The state machine's Decide step, the commit point. Exactly one decision: whoever else aborts uses
   * the same condition (decideAbort), and the loser reads the winner's decision.
   */
  decide: {
    edges: [
      ['PREPARING', 'COMMITTING'],
      ['PREPARING', 'ABORTING'],
    ],
    write: <V = never>(a: DecideArgs<V>) =>
      update(
        undecided(),
        set('status', a.status),
        set('decision', a.outcome),
        set('decisionReason', a.reason),
        set('decidedAt', a.at),
        set('updatedAt', a.at),
        remove('taskToken'),
        remove('taskPhase'),
      ),
  },
  /**
   * Decide ABORT from outside the state machine (a failed start, the client, the sweeper, the deadlock
   * detector). Keeps the task token, so the aborter can wake an execution waiting in Prepare.
   */
  decideAbort: {
    edges: [['PREPARING', 'ABORTING']],
    write: (reason: string, at: string) =>
      update(undecided(), set('status', 'ABORTING'), set('decision', 'ABORT'), set('decisionReason', reason), set('decidedAt', at), set('updatedAt', at)),
  },
  /**
   * The phase-two status becomes final, the record leaves the open index, and the TTL starts. A second
   * Finalize (a retried task, a recovery execution) fails the condition and reads the record.
   */
  finalize: {
    edges: [
      ['COMMITTING', 'COMMITTED'],
      ['ABORTING', 'ABORTED'],
    ],
    write: (result: PhaseTwoResult, at: string) => {
      assertEdge('finalize', result.from, result.final);
      return update(
        eq('status', result.from),
        set('status', result.final),
        set('finishedAt', at),
        set('updatedAt', at),
        set('expiresAt', result.expiresAt),
        remove('openPk'),
        remove('taskToken'),
        remove('taskPhase'),
      );
    },
  },
  /** Once per transaction, which participants phase two found in doubt. `updatedAt` stays: doubt is not progress. */
  markInDoubt: {
    edges: same('COMMITTING', 'ABORTING'),
    write: (phase: 'COMMIT' | 'ABORT', since: Record<string, string>) =>
      update(and(eq('status', PHASE_STATUS[phase]), notExists('inDoubtSince')), set('inDoubtSince', since)),
  },
  /**
   * The next recovery of an open transaction whose execution `seen.executionName` is gone: one claimant
   * per recovery number wins. A record written before executionName existed names none: the txId.
   */
  claimRecovery: {
    edges: same(...OPEN),
    write: (txId: string, seen: { executionName: string; recoveries: number }, next: { executionName: string; at: string }) =>
      update(
        and(
          exists('openPk'),
          seen.executionName === txId ? or(eq('executionName', seen.executionName), notExists('executionName')) : eq('executionName', seen.executionName),
          seen.recoveries === 0 ? notExists('recoveries') : eq('recoveries', seen.recoveries),
        ),
        set('executionName', next.executionName),
        set('recoveries', seen.recoveries + 1),
        set('updatedAt', next.at),
      ),
  },
} as const satisfies Record<string, { edges: readonly Edge[]; write: (...args: never[]) => LogWrite }>;

export type TransitionName = keyof typeof LOG_TRANSITIONS;

/** The claim of an idempotency key (its own item, `idem#<key>`): first claim wins, later ones read it. */
export function claimIdempotencyKeyWrite(item: IdempotencyRecord): PutWrite {
  return { kind: 'put', condition: notExists('pk'), item: { ...item } };
}

export const idempotencyPk = (key: string): string => `idem#${key}`;

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
