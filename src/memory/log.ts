// The transaction log in memory, with exactly the conditional semantics of the DynamoDB adapter
// (src/aws/log-store.ts): both derive every write from the table of state changes
// (src/core/log-transitions.ts); here the DSL is evaluated over plain objects. One map of items
// stands for the table (records and idempotency claims, by pk), and the two queries read it the
// way the `byCreated` and `open` indexes do. Records are copied in and out: a caller mutating what
// it passed or got back never changes the store. Deterministic: no clock, no randomness, no timers.
import { apply, evaluate, withoutUndefined } from '../core/log-dsl';
import { type ListKey, type PutResult, TableTxLog } from '../core/log';
import { type ItemUpdate, type PutWrite, type TransitionName, type UpdateWrite, assertTransition } from '../core/log-transitions';
import type { GroupsPage, MembersPage, WriteResult } from '../core/ports';
import type { TxRecord, TxStatus } from '../core/transaction';

type Item = Record<string, unknown>;

const copy = <T>(value: T): T => structuredClone(value);

export class MemoryTxLog extends TableTxLog {
  private readonly items = new Map<string, Item>();

  /** A group's open members, earliest deadline first, as the sparse `open` index serves them. */
  async openMembers(group: string, limit: number, startKey?: Record<string, unknown>): Promise<MembersPage> {
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`limit must be a positive integer, got ${limit}`);
    const members = [...this.items.values()].filter((i) => i.og === group).sort(byDeadline);
    const rest = startKey === undefined ? members : members.filter((i) => byDeadline(i, startKey) > 0);
    const page = rest.slice(0, limit);
    const last = page.length === limit && rest.length > limit ? page[page.length - 1] : undefined;
    return {
      items: page.map((i) => ({ txId: i.pk as string, prepareDeadlineAt: i.prepareDeadlineAt as number })),
      ...(last ? { nextKey: { pk: last.pk, og: last.og, prepareDeadlineAt: last.prepareDeadlineAt } } : {}),
    };
  }

  /** Every group with open members, in one page (a scan of the sparse `open` index). */
  async openGroups(limit: number, _startKey?: Record<string, unknown>, overdueBefore?: number): Promise<GroupsPage> {
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`limit must be a positive integer, got ${limit}`);
    const groups: Record<string, number> = {};
    let overdue = 0;
    for (const i of this.items.values()) {
      if (typeof i.og !== 'string') continue;
      groups[i.og] = (groups[i.og] ?? 0) + 1;
      if (overdueBefore !== undefined && (i.prepareDeadlineAt as number) < overdueBefore) overdue++;
    }
    return { groups, overdue };
  }

  protected async listShard(shard: string, limit: number, after?: ListKey): Promise<{ keys: ListKey[]; more: boolean }> {
    const listed = [...this.items.values()]
      .filter((i) => i.lp === shard)
      .map((i) => ({ pk: i.pk as string, createdAt: i.createdAt as string }))
      .sort((a, b) => -byCreated(a, b));
    const rest = after === undefined ? listed : listed.filter((k) => byCreated(k, after) < 0);
    return { keys: rest.slice(0, limit), more: rest.length > limit };
  }

  /** Every transaction record, copied (for a simulation's invariant checks). */
  records(): TxRecord[] {
    return [...this.items.values()].filter((i) => typeof i.lp === 'string').map((i) => copy(i) as unknown as TxRecord);
  }

  /** How many transactions are open (COMMITTED or ABORTED not yet written), without copying any. */
  openCount(): number {
    let open = 0;
    for (const item of this.items.values()) if (typeof item.lp === 'string' && item.status !== 'COMMITTED' && item.status !== 'ABORTED') open++;
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

  protected async readMany(pks: readonly string[]): Promise<Record<string, unknown>[]> {
    return [...new Set(pks)].flatMap((pk) => {
      const item = this.items.get(pk);
      return item === undefined ? [] : [copy(item)];
    });
  }

  protected async put(write: PutWrite): Promise<PutResult> {
    const pk = write.item.pk as string;
    const current = this.items.get(pk);
    if (!evaluate(write.condition, current)) return { written: false, existing: current === undefined ? undefined : structuredClone(current) };
    this.items.set(pk, withoutUndefined(write.item));
    return { written: true };
  }

  protected async updateItem(u: ItemUpdate): Promise<boolean> {
    const current = this.items.get(u.pk);
    if (!evaluate(u.write.condition, current)) return false;
    this.items.set(u.pk, apply(u.write.update, current ?? { pk: u.pk }));
    return true;
  }

  /** Delete an item, as DynamoDB's TTL does once it has expired (tests of what follows a forgotten record). */
  forget(pk: string): void {
    this.items.delete(pk);
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

/** The `open` index's order: deadline, then the table key (a tie-break DynamoDB leaves unspecified). */
function byDeadline(a: Record<string, unknown>, b: Record<string, unknown>): number {
  const d = (a.prepareDeadlineAt as number) - (b.prepareDeadlineAt as number);
  return d !== 0 ? d : (a.pk as string) < (b.pk as string) ? -1 : (a.pk as string) > (b.pk as string) ? 1 : 0;
}

/** The `byCreated` index's order, ascending: creation time, then the table key. */
function byCreated(a: ListKey, b: ListKey): number {
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  return a.pk < b.pk ? -1 : a.pk > b.pk ? 1 : 0;
}
