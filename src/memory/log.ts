// The transaction log in memory, with exactly the conditional semantics of the DynamoDB adapter
// (src/aws/log-store.ts): both derive every write from the table of state changes
// (src/core/log-transitions.ts); here the DSL is evaluated over plain objects. One map of items
// stands for the table (records and idempotency claims, by pk), and the two queries read it the
// way the `byCreated` and `open` indexes do. Records are copied in and out: a caller mutating what
// it passed or got back never changes the store. Deterministic: no clock, no randomness, no timers.
import { decodeCursor, encodeCursor, BadCursorError } from '../aws/cursor';
import { apply, evaluate, withoutUndefined } from '../core/log-dsl';
import { TableTxLog } from '../core/log';
import { type PutWrite, type TransitionName, type UpdateWrite, assertTransition } from '../core/log-transitions';
import type { ListPage, StalePage, WriteResult } from '../core/ports';
import type { Outcome, TxRecord, TxStatus } from '../core/transaction';

type Item = Record<string, unknown>;

const copy = <T>(value: T): T => structuredClone(value);

export class MemoryTxLog extends TableTxLog {
  private readonly items = new Map<string, Item>();

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
    return this.copyOf(txId);
  }

  private copyOf(pk: string): TxRecord | undefined {
    const item = this.items.get(pk);
    return item === undefined ? undefined : (copy(item) as unknown as TxRecord);
  }

  protected async read(pk: string): Promise<Record<string, unknown> | undefined> {
    const item = this.items.get(pk);
    return item === undefined ? undefined : copy(item);
  }

  protected async put(write: PutWrite): Promise<boolean> {
    const pk = write.item.pk as string;
    if (!evaluate(write.condition, this.items.get(pk))) return false;
    this.items.set(pk, withoutUndefined(write.item));
    return true;
  }

  protected async update(txId: string, name: TransitionName, before: TxStatus | undefined, write: UpdateWrite): Promise<WriteResult> {
    assertTransition(name, before);
    const current = this.items.get(txId);
    if (!evaluate(write.condition, current)) return { applied: false, record: this.copyOf(txId) };
    // Here the status actually being left is known: the change must be one of the table's edges
    // from it (a condition too weak to ensure that is caught before it writes, not after).
    const from = (current?.status as TxStatus | undefined) ?? null;
    assertTransition(name, from);
    // Like UpdateItem, an update without a pk guard would create the item from its key.
    this.items.set(txId, apply(write.update, current ?? { pk: txId }));
    const record = this.copyOf(txId);
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
