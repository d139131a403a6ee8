// The lock table in memory, with exactly the conditional semantics of src/aws/lock-store.ts (the
// contract suite in test/contract/locks.test.ts runs both): a versioned whole-item put, the waiters
// as a set, the held-lists as string sets, deadlock records listed newest first with a cursor.
// Values are copied on the way in and out, so no caller can change what is stored by aliasing.
// What DynamoDB does on its own is a method here: TTL (`collectGarbage`), which only ever removes
// idle lock items, held-lists and deadlock records, as the `expiresAt` the adapter writes allows.
// No clock and no timers: time only arrives as the `nowMs` arguments.
import { BadCursorError, decodeCursor, encodeCursor } from '../core/cursor';
import { type Holder, type LockItem, LOCK_GC_DAYS, type Waiter, assertLockInvariants, emptyLock, isIdle, waitShard } from '../core/locks';
import type { DeadlockPage, DeadlockRecord, LockStorePort } from '../core/ports';

interface Stored<T> {
  value: T;
  /** Epoch seconds after which TTL may remove it; undefined: never (a held or waited-for lock). */
  expiresAtS: number | undefined;
}

const gcAfterS = (nowMs: number): number => Math.floor(nowMs / 1000) + LOCK_GC_DAYS * 86_400;

export class MemoryLockStore implements LockStorePort {
  private readonly locks = new Map<string, Stored<LockItem>>();
  private readonly heldLists = new Map<string, Stored<Set<string>>>();
  private readonly deadlocks = new Map<string, Stored<DeadlockRecord>>();

  async get(resource: string): Promise<LockItem> {
    const stored = this.locks.get(resource);
    return stored ? copyLock(stored.value) : emptyLock(resource);
  }

  async put(next: LockItem, expectedVersion: number, nowMs: number): Promise<boolean> {
    assertLockInvariants(next);
    const current = this.locks.get(next.resource);
    // Version 0: the item must not exist; otherwise it must still be at the version read.
    if (expectedVersion === 0 ? current !== undefined : current?.value.version !== expectedVersion) return false;
    const value = { ...copyLock(next), version: expectedVersion + 1 };
    this.locks.set(next.resource, { value, expiresAtS: isIdle(value) ? gcAfterS(nowMs) : undefined });
    return true;
  }

  /** Ordered as the sharded index is read (shard, then resource); callers must treat it as a set. */
  async waiting(): Promise<LockItem[]> {
    const items = [...this.locks.values()].map((s) => s.value).filter((item) => Object.keys(item.waiters).length > 0);
    items.sort((a, b) => compare(waitShard(a.resource), waitShard(b.resource)) || compare(a.resource, b.resource));
    return items.map(copyLock);
  }

  async addHeld(owner: string, scope: string, resource: string, nowMs: number): Promise<void> {
    const key = heldKey(owner, scope);
    const resources = this.heldLists.get(key)?.value ?? new Set<string>();
    resources.add(resource);
    this.heldLists.set(key, { value: resources, expiresAtS: gcAfterS(nowMs) });
    return;
  }

  async held(owner: string, scope: string): Promise<string[]> {
    return [...(this.heldLists.get(heldKey(owner, scope))?.value ?? [])].sort();
  }

  async forgetHeld(owner: string, scope: string, resources: string[]): Promise<void> {
    const set = this.heldLists.get(heldKey(owner, scope))?.value;
    for (const r of resources) set?.delete(r);
    return;
  }

  async putDeadlock(record: DeadlockRecord, nowMs: number): Promise<boolean> {
    if (this.deadlocks.has(record.id)) return false;
    this.deadlocks.set(record.id, { value: copyDeadlock(record), expiresAtS: gcAfterS(nowMs) });
    return true;
  }

  /**
   * Newest first (createdAt descending; equal createdAt by id descending: DynamoDB leaves that order
   * to its hashing). As DynamoDB does, a full page carries a cursor even when nothing follows it.
   */
  async listDeadlocks(limit: number, cursor?: string): Promise<DeadlockPage> {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, got ${limit}`);
    let after: { createdAt: string; id: string } | undefined;
    if (cursor) {
      const key = decodeCursor(cursor);
      if (typeof key.createdAt !== 'string' || typeof key.resource !== 'string') throw new BadCursorError('cursor is not one this API returned');
      after = { createdAt: key.createdAt, id: key.resource };
    }
    const newestFirst = [...this.deadlocks.values()].map((s) => s.value).sort((a, b) => compare(b.createdAt, a.createdAt) || compare(b.id, a.id));
    const rest = after ? newestFirst.filter((r) => compare(r.createdAt, after.createdAt) < 0 || (r.createdAt === after.createdAt && compare(r.id, after.id) < 0)) : newestFirst;
    const items = rest.slice(0, limit);
    const last = items.length === limit ? items[items.length - 1] : undefined;
    return {
      items: items.map(copyDeadlock),
      ...(last ? { nextCursor: encodeCursor({ resource: last.id, deadlockPk: 'deadlock', createdAt: last.createdAt }) } : {}),
    };
  }

  /** DynamoDB's TTL: removes what expired by `nowMs`; of the lock items only idle ones ever carry an expiry. Answers how many went. */
  collectGarbage(nowMs: number): number {
    let removed = 0;
    for (const map of [this.locks, this.heldLists, this.deadlocks] as Map<string, Stored<unknown>>[]) {
      for (const [key, stored] of map) {
        if (stored.expiresAtS !== undefined && stored.expiresAtS * 1000 <= nowMs) {
          map.delete(key);
          removed++;
        }
      }
    }
    return removed;
  }

  /** Every lock item as stored, by resource (for invariant checks in tests and simulations). */
  snapshot(): LockItem[] {
    return [...this.locks.values()].map((s) => copyLock(s.value)).sort((a, b) => compare(a.resource, b.resource));
  }
}

const heldKey = (owner: string, scope: string): string => `held#${owner}#${scope}`;

/** Code-unit order: the byte order DynamoDB sorts keys in, for the ASCII names resources may have. */
const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

// Field by field, as the adapter's schema reads an item back: nothing that is not part of a lock survives.
function copyLock(item: LockItem): LockItem {
  const owners: Record<string, Holder> = {};
  for (const [key, h] of Object.entries(item.owners)) {
    owners[key] = { mode: h.mode, token: h.token, leaseUntilMs: h.leaseUntilMs, grantedAtMs: h.grantedAtMs, scopes: [...h.scopes] };
  }
  const waiters: Record<string, Waiter> = {};
  for (const [key, w] of Object.entries(item.waiters)) waiters[key] = { mode: w.mode, sinceMs: w.sinceMs, untilMs: w.untilMs };
  return { resource: item.resource, version: item.version, token: item.token, owners, waiters };
}

function copyDeadlock(r: DeadlockRecord): DeadlockRecord {
  return {
    id: r.id,
    createdAt: r.createdAt,
    victim: r.victim,
    cycle: [...r.cycle],
    edges: r.edges.map((e) => ({ waiter: e.waiter, holder: e.holder, resource: e.resource })),
    trigger: r.trigger,
  };
}
