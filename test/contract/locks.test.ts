// One contract, two adapters: the in-memory lock store (src/memory/locks.ts) must answer exactly as
// the DynamoDB one (src/aws/lock-store.ts) does on dynalite, case by case and over random operation
// sequences, so a simulation over the memory store runs the lock service as production does.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BadCursorError } from '../../src/core/cursor';
import { type LockItem, type LockMode, decideAcquire, decideRelease, emptyLock } from '../../src/core/locks';
import type { DeadlockRecord, LockStorePort } from '../../src/core/ports';
import { MemoryLockStore } from '../../src/memory/locks';
import { lockEnvOn } from '../locks/local';
import { type LocalAws, startLocalAws } from '../support/aws';

const started: LocalAws[] = [];

afterAll(async () => {
  for (const aws of started.splice(0)) await aws.stop();
});

/**
 * A fresh, empty DynamoDB lock table per store: the app's lock table, as the template defines it,
 * on a dynalite of its own (provisioning names the table after its stack and construct, so one
 * dynalite holds one copy of it). Each is stopped after the file.
 */
async function dynamoStore(): Promise<LockStorePort> {
  const aws = await startLocalAws({ tables: ['locks', 'log'] });
  started.push(aws);
  return lockEnvOn(aws).store;
}

const adapters: { name: string; fresh: () => Promise<LockStorePort> }[] = [
  { name: 'memory', fresh: () => Promise.resolve(new MemoryLockStore()) },
  { name: 'dynamodb (dynalite)', fresh: dynamoStore },
];

const NOW = 1_800_000_000_000;

function held(resource: string, owner: string, mode: LockMode, token: number, extra: Partial<LockItem> = {}): LockItem {
  return {
    resource,
    version: 0,
    token,
    owners: { [owner]: { mode, token, leaseUntilMs: NOW + 10_000, grantedAtMs: NOW, scopes: ['inventory'] } },
    waiters: {},
    ...extra,
  };
}

function deadlock(createdAtMs: number, victim: string): DeadlockRecord {
  const createdAt = new Date(createdAtMs).toISOString();
  return {
    id: `deadlock#${createdAt}#${victim}`,
    createdAt,
    victim,
    cycle: [victim, 'other'],
    edges: [
      { waiter: victim, holder: 'other', resource: 'r1' },
      { waiter: 'other', holder: victim, resource: 'r2' },
    ],
    trigger: 'schedule',
  };
}

describe.each(adapters)('LockStorePort on $name', ({ fresh }) => {
  let store: LockStorePort;
  beforeAll(async () => {
    store = await fresh();
  });

  it('answers an absent item as version 0 with nothing held', async () => {
    expect(await store.get('absent')).toEqual(emptyLock('absent'));
  });

  it('creates on version 0 only once, then writes only on the version that was read', async () => {
    const first = held('versioned', 'tx#a', 'X', 5);
    expect(await store.put(first, 0, NOW)).toBe(true);
    expect(await store.put(first, 0, NOW)).toBe(false);
    expect(await store.get('versioned')).toEqual({ ...first, version: 1 });
    const second = { ...held('versioned', 'tx#b', 'S', 6), version: 1 };
    expect(await store.put(second, 2, NOW)).toBe(false);
    expect(await store.put(second, 1, NOW)).toBe(true);
    expect(await store.put(second, 1, NOW)).toBe(false);
    expect(await store.get('versioned')).toEqual({ ...second, version: 2 });
  });

  it('refuses to store an item that breaks the lock invariants', async () => {
    const shared = held('broken', 'tx#a', 'X', 5);
    shared.owners['tx#b'] = { ...shared.owners['tx#a']!, mode: 'S' };
    await expect(store.put(shared, 0, NOW)).rejects.toThrow(/exclusive owner shares/);
    expect((await store.get('broken')).version).toBe(0);
  });

  it('keeps what it stores apart from what callers hold', async () => {
    const item = held('aliased', 'tx#a', 'X', 5);
    await store.put(item, 0, NOW);
    item.owners['tx#a']!.scopes.push('changed');
    item.token = 99;
    const read = await store.get('aliased');
    read.owners['tx#a']!.leaseUntilMs = 0;
    read.waiters['tx#z'] = { mode: 'S', sinceMs: 0, untilMs: 1 };
    expect(await store.get('aliased')).toEqual({ ...held('aliased', 'tx#a', 'X', 5), version: 1 });
  });

  it('lists exactly the items that have waiters, and drops one once nobody waits', async () => {
    const waitedFor = held('waited-for', 'tx#a', 'X', 5, { waiters: { 'tx#b': { mode: 'S', sinceMs: NOW, untilMs: NOW + 5_000 } } });
    await store.put(waitedFor, 0, NOW);
    await store.put(held('nobody-waits', 'tx#a', 'X', 5), 0, NOW);
    const names = async () => (await store.waiting()).map((i) => i.resource).filter((r) => r.startsWith('waited') || r === 'nobody-waits');
    expect(await names()).toEqual(['waited-for']);
    expect((await store.waiting()).find((i) => i.resource === 'waited-for')).toEqual({ ...waitedFor, version: 1 });
    await store.put({ ...waitedFor, version: 1, waiters: {} }, 1, NOW);
    expect(await names()).toEqual([]);
  });

  it('keeps a held-list per owner and scope as a sorted set; forgetting subtracts', async () => {
    await store.addHeld('tx#h', 'inventory', 'sku-2', NOW);
    await store.addHeld('tx#h', 'inventory', 'sku-1', NOW);
    await store.addHeld('tx#h', 'inventory', 'sku-2', NOW);
    await store.addHeld('tx#h', 'payment', 'acct-1', NOW);
    expect(await store.held('tx#h', 'inventory')).toEqual(['sku-1', 'sku-2']);
    await store.forgetHeld('tx#h', 'inventory', ['sku-2', 'never-held']);
    await store.forgetHeld('tx#h', 'inventory', []);
    await store.forgetHeld('tx#unknown', 'inventory', ['sku-1']);
    expect(await store.held('tx#h', 'inventory')).toEqual(['sku-1']);
    expect(await store.held('tx#h', 'payment')).toEqual(['acct-1']);
    expect(await store.held('tx#unknown', 'inventory')).toEqual([]);
    await store.forgetHeld('tx#h', 'inventory', ['sku-1']);
    expect(await store.held('tx#h', 'inventory')).toEqual([]);
    await store.addHeld('tx#h', 'inventory', 'sku-3', NOW);
    expect(await store.held('tx#h', 'inventory')).toEqual(['sku-3']);
  });

  it('records a deadlock once and lists them newest first, a page at a time', async () => {
    const own = await fresh();
    const records = [deadlock(NOW + 1, 'v1'), deadlock(NOW + 3, 'v3'), deadlock(NOW + 2, 'v2')];
    for (const r of records) expect(await own.putDeadlock(r, NOW)).toBe(true);
    expect(await own.putDeadlock({ ...records[0]!, victim: 'someone else' }, NOW)).toBe(false);
    const first = await own.listDeadlocks(2);
    expect(first.items).toEqual([records[1], records[2]]);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await own.listDeadlocks(2, first.nextCursor);
    expect(second).toEqual({ items: [records[0]] });
    // A full page carries a cursor even when nothing follows (as DynamoDB's Limit does).
    const all = await own.listDeadlocks(3);
    expect(all.items).toHaveLength(3);
    expect(await own.listDeadlocks(3, all.nextCursor)).toEqual({ items: [] });
    expect(await own.listDeadlocks(10)).toEqual({ items: [records[1], records[2], records[0]] });
  });

  it('rejects a cursor it did not hand out', async () => {
    await expect(store.listDeadlocks(5, 'not a cursor')).rejects.toBeInstanceOf(BadCursorError);
  });
});

// ---------------------------------------------------------------------------------------------
// Random operation sequences: both adapters, fed the same operations, answer the same.

const RESOURCES = ['r0', 'r1', 'r2'];
const OWNERS = ['tx#a', 'tx#b', 'owner#c'];

type Op =
  | { kind: 'acquire'; resource: string; owner: string; mode: LockMode; atMs: number; stale: boolean }
  | { kind: 'release'; resource: string; owner: string }
  | { kind: 'putOn'; resource: string; expectedVersion: number }
  | { kind: 'waiting' }
  | { kind: 'addHeld'; owner: string; resource: string }
  | { kind: 'forgetHeld'; owner: string; resources: string[] }
  | { kind: 'deadlock'; victim: string; again: boolean }
  | { kind: 'list'; limit: number };

const resource = fc.constantFrom(...RESOURCES);
const owner = fc.constantFrom(...OWNERS);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('acquire' as const), resource, owner, mode: fc.constantFrom<LockMode>('S', 'X'), atMs: fc.integer({ min: 0, max: 20_000 }), stale: fc.boolean() }),
  fc.record({ kind: fc.constant('release' as const), resource, owner }),
  fc.record({ kind: fc.constant('putOn' as const), resource, expectedVersion: fc.integer({ min: 0, max: 4 }) }),
  fc.constant({ kind: 'waiting' as const }),
  fc.record({ kind: fc.constant('addHeld' as const), owner, resource }),
  fc.record({ kind: fc.constant('forgetHeld' as const), owner, resources: fc.subarray(RESOURCES) }),
  fc.record({ kind: fc.constant('deadlock' as const), victim: owner, again: fc.boolean() }),
  fc.record({ kind: fc.constant('list' as const), limit: fc.integer({ min: 1, max: 3 }) }),
);

/** Applies `o` to `store` and answers what an observer could see of it. `item` is what was read before (the same on both). */
async function apply(store: LockStorePort, o: Op, step: number, item: LockItem, deadlocks: DeadlockRecord[]): Promise<unknown> {
  switch (o.kind) {
    case 'acquire': {
      const d = decideAcquire(item, { owner: { kind: o.owner.startsWith('tx#') ? 'tx' : 'owner', id: o.owner.slice(o.owner.indexOf('#') + 1) }, mode: o.mode, scope: 's', leaseMs: 5_000, waitUntilMs: NOW + o.atMs + 3_000, nowMs: NOW + o.atMs }, new Map(OWNERS.map((k) => [k, 'removable'])));
      const next = d.kind === 'granted' ? d.next : d.kind === 'wait' ? d.next : undefined;
      return next ? store.put(next, o.stale ? Math.max(0, item.version - 1) : item.version, NOW + o.atMs) : d.kind;
    }
    case 'release': {
      const next = decideRelease(item, { kind: o.owner.startsWith('tx#') ? 'tx' : 'owner', id: o.owner.slice(o.owner.indexOf('#') + 1) }, 's');
      return next ? store.put(next, item.version, NOW) : 'nothing';
    }
    case 'putOn':
      return store.put({ ...held(o.resource, 'owner#p', 'S', item.token + 1), token: item.token + 1 }, o.expectedVersion, NOW);
    case 'waiting':
      return (await store.waiting()).sort((a, b) => a.resource.localeCompare(b.resource));
    case 'addHeld':
      await store.addHeld(o.owner, 's', o.resource, NOW);
      return store.held(o.owner, 's');
    case 'forgetHeld':
      await store.forgetHeld(o.owner, 's', o.resources);
      return store.held(o.owner, 's');
    case 'deadlock':
      // Distinct times (the step), so that newest-first is one order; `again` repeats an earlier record.
      return store.putDeadlock(o.again && deadlocks.length > 0 ? deadlocks[step % deadlocks.length]! : deadlock(NOW + step, o.victim.replace('#', '-')), NOW);
    case 'list': {
      const pages: unknown[] = [];
      let cursor: string | undefined;
      for (let i = 0; i < 20; i++) {
        const page = await store.listDeadlocks(o.limit, cursor);
        pages.push({ items: page.items, more: page.nextCursor !== undefined });
        cursor = page.nextCursor;
        if (!cursor) break;
      }
      return pages;
    }
  }
}

describe('the memory and DynamoDB lock stores', () => {
  it('answer random operation sequences identically', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 16 }), async (ops) => {
        const memory = new MemoryLockStore();
        const dynamo = await dynamoStore();
        const deadlocks: DeadlockRecord[] = [];
        for (const [step, o] of ops.entries()) {
          const target = 'resource' in o ? o.resource : 'r0';
          const [m, d] = [await memory.get(target), await dynamo.get(target)];
          expect(m).toEqual(d);
          const [a, b] = [await apply(memory, o, step, m, deadlocks), await apply(dynamo, o, step, d, deadlocks)];
          expect(a).toEqual(b);
          if (o.kind === 'deadlock' && !o.again) deadlocks.push(deadlock(NOW + step, o.victim.replace('#', '-')));
        }
        for (const r of RESOURCES) expect(await memory.get(r)).toEqual(await dynamo.get(r));
      }),
      { numRuns: 8, seed: 20261101 },
    );
  }, 60_000);
});
