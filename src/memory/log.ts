// The transaction log in memory, with exactly the conditional semantics of the DynamoDB adapter
// (src/aws/log-store.ts): both derive every write from the table of state changes
// (src/core/log-transitions.ts); here the DSL is evaluated over plain objects. One map of items
// stands for the table (records and idempotency claims, by pk), and the two queries read it the
// way the `byCreated` and `open` indexes do. Records are copied in and out: a caller mutating what
// it passed or got back never changes the store. Deterministic: no clock, no randomness, no timers.
import { decodeCursor, encodeCursor, BadCursorError } from '../aws/cursor';
import { apply, evaluate, withoutUndefined } from '../core/log-dsl';
import { LOG_TRANSITIONS, type PutWrite, type TransitionName, type UpdateWrite, assertTransition, claimIdempotencyKeyWrite, idempotencyPk } from '../core/log-transitions';
import type { IdempotencyRecord, ListPage, StalePage, TxLogPort, WriteResult } from '../core/ports';
import { type AckEntry, type Outcome, PHASE_STATUS, type Phase, type PhaseTwoResult, type TxRecord, type TxStatus, type VoteEntry } from '../core/transaction';

type Item = Record<string, unknown>;

const copy = <T>(value: T): T => structuredClone(value);

export class MemoryTxLog implements TxLogPort {
  private readonly items = new Map<string, Item>();

  async create(record: TxRecord): Promise<boolean> {
    assertTransition('create', null);
    return this.put(LOG_TRANSITIONS.create.write(record));
  }

  async get(txId: string): Promise<TxRecord | undefined> {
    return this.read(txId);
  }

  async recordVote(txId: string, participant: string, entry: VoteEntry): Promise<WriteResult> {
    return this.transition(txId, 'recordVote', 'PREPARING', LOG_TRANSITIONS.recordVote.write(participant, entry));
  }

  async recordAck(txId: string, participant: string, entry: AckEntry): Promise<WriteResult> {
    return this.transition(txId, 'recordAck', PHASE_STATUS[entry.phase], LOG_TRANSITIONS.recordAck.write(participant, entry));
  }

  async storeTaskToken(txId: string, phase: Phase, taskToken: string, at: string): Promise<WriteResult> {
    return this.transition(txId, 'storeTaskToken', PHASE_STATUS[phase], LOG_TRANSITIONS.storeTaskToken.write(phase, taskToken, at));
  }

  async finalize(txId: string, result: PhaseTwoResult, at: string): Promise<WriteResult> {
    return this.transition(txId, 'finalize', result.from, LOG_TRANSITIONS.finalize.write(result, at));
  }

  async markInDoubt(txId: string, phase: 'COMMIT' | 'ABORT', since: Record<string, string>): Promise<WriteResult> {
    return this.transition(txId, 'markInDoubt', PHASE_STATUS[phase], LOG_TRANSITIONS.markInDoubt.write(phase, since));
  }

  async decideAbort(txId: string, reason: string, at: string): Promise<WriteResult> {
    return this.transition(txId, 'decideAbort', 'PREPARING', LOG_TRANSITIONS.decideAbort.write(reason, at));
  }

  /** The state machine's Decide step (what the simulation's state machine runs). */
  async decide(txId: string, prepare: { status: 'COMMITTING' | 'ABORTING'; outcome: Outcome; reason: string }, at: string): Promise<WriteResult> {
    return this.transition(txId, 'decide', 'PREPARING', LOG_TRANSITIONS.decide.write({ ...prepare, at }));
  }

  async claimRecovery(txId: string, seen: { executionName: string; recoveries: number }, next: { executionName: string; at: string }): Promise<WriteResult> {
    return this.transition(txId, 'claimRecovery', undefined, LOG_TRANSITIONS.claimRecovery.write(txId, seen, next));
  }

  /** Open records (having `openPk`) with `updatedAt` at or before `beforeIso`, oldest first, as the `open` index serves them. */
  async listStale(beforeIso: string, limit: number, startKey?: Record<string, unknown>): Promise<StalePage> {
    const open = [...this.items.values()]
      .filter((i) => i.openPk === 'open' && typeof i.updatedAt === 'string' && i.updatedAt <= beforeIso)
      .sort((a, b) => byKeys(a, b, 'updatedAt'));
    const page = after(open, startKey, 'updatedAt', 1, limit);
    const items = page.map((i) => ({
      txId: i.txId as string,
      status: i.status as TxStatus,
      updatedAt: i.updatedAt as string,
      prepareDeadlineAt: i.prepareDeadlineAt as number,
    }));
    const last = page.length === limit ? page[page.length - 1] : undefined;
    return { items, ...(last ? { nextKey: { pk: last.pk, openPk: last.openPk, updatedAt: last.updatedAt } } : {}) };
  }

  /** Newest first by `createdAt`, as the `byCreated` index serves them; the cursor is opaque. */
  async list(limit: number, cursor?: string): Promise<ListPage> {
    const startKey = cursor === undefined ? undefined : decodeCursor(cursor);
    if (startKey && (typeof startKey.pk !== 'string' || typeof startKey.createdAt !== 'string')) {
      throw new BadCursorError('cursor is not one this API returned');
    }
    const listed = [...this.items.values()].filter((i) => i.listPk === 'tx' && typeof i.createdAt === 'string').sort((a, b) => byKeys(b, a, 'createdAt'));
    const page = after(listed, startKey, 'createdAt', -1, limit);
    const items = page.map((i) => ({
      txId: i.txId as string,
      status: i.status as TxStatus,
      createdAt: i.createdAt as string,
      updatedAt: i.updatedAt as string,
      ...(i.decision ? { decision: i.decision as Outcome, decisionReason: i.decisionReason as string | undefined } : {}),
    }));
    const last = page.length === limit ? page[page.length - 1] : undefined;
    return { items, ...(last ? { nextCursor: encodeCursor({ pk: last.pk, listPk: last.listPk, createdAt: last.createdAt }) } : {}) };
  }

  async claimIdempotencyKey(key: string, txId: string, requestHash: string, at: string): Promise<IdempotencyRecord> {
    const item: IdempotencyRecord = { pk: idempotencyPk(key), txId, requestHash, createdAt: at };
    if (this.put(claimIdempotencyKeyWrite(item))) return item;
    return copy(this.items.get(item.pk)) as unknown as IdempotencyRecord;
  }

  /** Every transaction record, copied (for a simulation's invariant checks). */
  records(): TxRecord[] {
    return [...this.items.values()].filter((i) => i.listPk === 'tx').map((i) => copy(i) as unknown as TxRecord);
  }

  /** How many transactions are open (COMMITTED or ABORTED not yet written), without copying any. */
  openCount(): number {
    let open = 0;
    for (const item of this.items.values()) if (item.listPk === 'tx' && item.status !== 'COMMITTED' && item.status !== 'ABORTED') open++;
    return open;
  }

  /** One record as it is now, copied, without a round trip (for a simulation's checks). */
  peek(txId: string): TxRecord | undefined {
    return this.read(txId);
  }

  private read(pk: string): TxRecord | undefined {
    const item = this.items.get(pk);
    return item === undefined ? undefined : (copy(item) as unknown as TxRecord);
  }

  private put(write: PutWrite): boolean {
    const pk = write.item.pk as string;
    if (!evaluate(write.condition, this.items.get(pk))) return false;
    this.items.set(pk, withoutUndefined(write.item));
    return true;
  }

  private transition(txId: string, name: TransitionName, before: TxStatus | undefined, write: UpdateWrite): WriteResult {
    assertTransition(name, before);
    const current = this.items.get(txId);
    if (!evaluate(write.condition, current)) return { applied: false, record: this.read(txId) };
    // Here the status actually being left is known: the change must be one of the table's edges
    // from it (a condition too weak to ensure that is caught before it writes, not after).
    const from = (current?.status as TxStatus | undefined) ?? null;
    assertTransition(name, from);
    // Like UpdateItem, an update without a pk guard would create the item from its key.
    this.items.set(txId, apply(write.update, current ?? { pk: txId }));
    const record = this.read(txId);
    assertTransition(name, from, record);
    return { applied: true, record };
  }
}

/** Index order: the sort key, then the table key (`pk`), a tie-break DynamoDB leaves unspecified (callers may not rely on it). */
function byKeys(a: Item, b: Item, sortKey: string): number {
  const x = `${a[sortKey] as string}\u0000${a.pk as string}`;
  const y = `${b[sortKey] as string}\u0000${b.pk as string}`;
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * At most `limit` items after the exclusive start key, in the list's order (`direction` 1: ascending
 * by the sort key, -1: descending). The start key need not be an item still in the list.
 */
function after(sorted: Item[], startKey: Record<string, unknown> | undefined, sortKey: string, direction: 1 | -1, limit: number): Item[] {
  if (!Number.isInteger(limit) || limit < 1) throw new Error(`limit must be a positive integer, got ${limit}`);
  const rest = startKey === undefined ? sorted : sorted.filter((i) => byKeys(i, startKey, sortKey) * direction > 0);
  return rest.slice(0, limit);
}
