// The lock table's pure rules (src/core/locks.ts): modes, re-entrance, upgrades, leases and their
// takeover only with the log's verdict, fencing tokens, waiters; and a property over random
// operation sequences that no two conflicting owners ever hold a resource and tokens only rise.
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import {
  type AcquireRequest,
  type LockItem,
  type LockMode,
  type OwnerRef,
  type OwnerVerdict,
  assertLockInvariants,
  backoffMs,
  decideAcquire,
  decideRelease,
  decideRenew,
  emptyLock,
  isIdle,
  nextToken,
  ownerKey,
  parseOwnerKey,
  resourceName,
  withoutWaiter,
} from '../../src/core/locks';
import { runnerPorts } from '../support/runner-ports';

const T0 = 1_000_000;
const tx = (id: string): OwnerRef => ({ kind: 'tx', id });
const standalone = (id: string): OwnerRef => ({ kind: 'owner', id });

function request(owner: OwnerRef, mode: LockMode, nowMs = T0, extra: Partial<AcquireRequest> = {}): AcquireRequest {
  return { owner, mode, scope: 'inventory', leaseMs: 10_000, waitUntilMs: nowMs + 5_000, nowMs, ...extra };
}

/** Apply a decision the way the store would: only a grant or a waiter write changes the item. */
function apply(item: LockItem, req: AcquireRequest, verdicts?: Map<string, OwnerVerdict>) {
  const d = decideAcquire(item, req, verdicts);
  if (d.kind === 'granted') return { d, item: { ...d.next, version: item.version + 1 } };
  if (d.kind === 'wait' && d.next) return { d, item: { ...d.next, version: item.version + 1 } };
  return { d, item };
}

describe('acquire', () => {
  it('grants X on a free resource with a token above the last one and the clock', () => {
    const { d } = apply(emptyLock('r'), request(tx('a'), 'X'));
    expect(d).toMatchObject({ kind: 'granted', grant: { resource: 'r', mode: 'X', token: T0, leaseUntilMs: T0 + 10_000 }, reentrant: false });
    expect(nextToken({ token: T0 + 5 }, T0)).toBe(T0 + 6);
  });

  it('shares S, and makes X wait for every other owner', () => {
    let item = apply(emptyLock('r'), request(tx('a'), 'S')).item;
    item = apply(item, request(tx('b'), 'S')).item;
    expect(Object.keys(item.owners).sort()).toEqual(['tx#a', 'tx#b']);
    const x = apply(item, request(tx('c'), 'X'));
    expect(x.d).toMatchObject({ kind: 'wait', blockers: ['tx#a', 'tx#b'] });
    expect(x.item.waiters['tx#c']).toEqual({ mode: 'X', sinceMs: T0, untilMs: T0 + 5_000 });
  });

  it('makes S wait for an X owner', () => {
    const item = apply(emptyLock('r'), request(tx('a'), 'X')).item;
    expect(decideAcquire(item, request(tx('b'), 'S'))).toMatchObject({ kind: 'wait', blockers: ['tx#a'] });
  });

  it('is re-entrant: the same owner keeps its token, adds its scope and extends its lease', () => {
    const first = apply(emptyLock('r'), request(tx('a'), 'X'));
    const again = apply(first.item, request(tx('a'), 'X', T0 + 3_000, { scope: 'coordinator' }));
    expect(again.d).toMatchObject({ kind: 'granted', reentrant: true, upgraded: false, grant: { token: T0, leaseUntilMs: T0 + 13_000 } });
    expect(again.item.owners['tx#a']!.scopes).toEqual(['coordinator', 'inventory']);
    // A weaker re-entrant request keeps the stronger mode.
    expect(decideAcquire(again.item, request(tx('a'), 'S', T0 + 3_000))).toMatchObject({ kind: 'granted', grant: { mode: 'X', token: T0 } });
  });

  it('upgrades S to X for a sole owner with a new, higher token; with other S owners the upgrade waits', () => {
    const s = apply(emptyLock('r'), request(tx('a'), 'S'));
    const up = apply(s.item, request(tx('a'), 'X', T0 + 1));
    expect(up.d).toMatchObject({ kind: 'granted', upgraded: true, grant: { mode: 'X', token: T0 + 1 } });
    const shared = apply(s.item, request(tx('b'), 'S', T0 + 1)).item;
    expect(decideAcquire(shared, request(tx('a'), 'X', T0 + 2))).toMatchObject({ kind: 'wait', blockers: ['tx#b'] });
  });

  it('keeps a waiter since its first wait, and drops its entry when granted', () => {
    let item = apply(emptyLock('r'), request(tx('a'), 'X')).item;
    item = apply(item, request(tx('b'), 'X', T0 + 10)).item;
    const again = decideAcquire(item, request(tx('b'), 'X', T0 + 20, { waitUntilMs: T0 + 5_010 }));
    expect(again).toMatchObject({ kind: 'wait', next: undefined }); // nothing new to write
    item = decideRelease(item, tx('a'), 'inventory')!;
    const granted = apply(item, request(tx('b'), 'X', T0 + 30));
    expect(granted.d.kind).toBe('granted');
    expect(granted.item.waiters).toEqual({});
    expect(granted.item.token).toBeGreaterThan(T0);
  });

  it('prunes stale waiter entries (their waiter gave up or crashed)', () => {
    let item = apply(emptyLock('r'), request(tx('a'), 'X')).item;
    item = apply(item, request(tx('b'), 'X', T0, { waitUntilMs: T0 + 100 })).item;
    const later = decideAcquire(item, request(tx('c'), 'X', T0 + 200));
    expect(later.kind === 'wait' && Object.keys(later.next!.waiters)).toEqual(['tx#c']);
  });
});

describe('leases', () => {
  const held = (owner: OwnerRef) => apply(emptyLock('r'), request(owner, 'X')).item;

  it('frees an expired standalone owner at once: its lease alone decides', () => {
    const d = decideAcquire(held(standalone('w1')), request(standalone('w2'), 'X', T0 + 10_000));
    expect(d).toMatchObject({ kind: 'granted', takenOver: ['owner#w1'] });
  });

  it('never frees a live lease, of anyone', () => {
    expect(decideAcquire(held(tx('a')), request(tx('b'), 'X', T0 + 9_999), new Map([['tx#a', 'removable']]))).toMatchObject({ kind: 'wait' });
    expect(decideAcquire(held(standalone('w')), request(tx('b'), 'X', T0 + 9_999))).toMatchObject({ kind: 'wait' });
  });

  it('asks the log about an expired transaction owner before anything else', () => {
    expect(decideAcquire(held(tx('a')), request(tx('b'), 'X', T0 + 10_000))).toEqual({ kind: 'check', owners: ['tx#a'] });
  });

  it('takes over from an owner that can no longer commit, in the same write that grants', () => {
    const d = decideAcquire(held(tx('a')), request(tx('b'), 'X', T0 + 10_000), new Map([['tx#a', 'removable']]));
    expect(d).toMatchObject({ kind: 'granted', takenOver: ['tx#a'], grant: { token: T0 + 10_000 } });
    expect(d.kind === 'granted' && Object.keys(d.next.owners)).toEqual(['tx#b']);
  });

  it('keeps the lock of an owner that may still commit, however old its lease', () => {
    const d = decideAcquire(held(tx('a')), request(tx('b'), 'X', T0 + 10_000_000), new Map([['tx#a', 'protected']]));
    expect(d).toMatchObject({ kind: 'wait', blockers: ['tx#a'] });
  });

  it('renews only a lease the owner still has, and never shortens it', () => {
    const item = held(tx('a'));
    const renewed = decideRenew(item, tx('a'), 1_000, T0 + 1);
    expect(renewed).toMatchObject({ kind: 'renewed', grant: { leaseUntilMs: T0 + 10_000, token: T0 } });
    expect(decideRenew(item, tx('a'), 60_000, T0 + 1)).toMatchObject({ kind: 'renewed', grant: { leaseUntilMs: T0 + 60_001 } });
    expect(decideRenew(item, tx('b'), 60_000, T0 + 1)).toEqual({ kind: 'lost' });
  });
});

describe('release', () => {
  it('releases per scope; the owner stays while another scope holds it', () => {
    let item = apply(emptyLock('r'), request(tx('a'), 'X')).item;
    item = apply(item, request(tx('a'), 'X', T0, { scope: 'coordinator' })).item;
    item = decideRelease(item, tx('a'), 'inventory')!;
    expect(item.owners['tx#a']!.scopes).toEqual(['coordinator']);
    item = decideRelease(item, tx('a'), 'coordinator')!;
    expect(isIdle(item)).toBe(true);
    expect(item.token).toBe(T0); // the token survives the release: the next grant is higher
    expect(decideRelease(item, tx('a'), 'coordinator')).toBeUndefined();
  });

  it('drops a waiter entry on release and on giving up', () => {
    let item = apply(emptyLock('r'), request(tx('a'), 'X')).item;
    item = apply(item, request(tx('b'), 'X')).item;
    expect(withoutWaiter(item, tx('b'))!.waiters).toEqual({});
    expect(withoutWaiter(item, tx('c'))).toBeUndefined();
    expect(decideRelease(item, tx('b'), 'inventory')!.waiters).toEqual({});
  });
});

describe('names and helpers', () => {
  it('round-trips owner keys and refuses the table own prefixes as resources', () => {
    expect(parseOwnerKey(ownerKey(tx('a#b')))).toEqual(tx('a#b'));
    expect(() => parseOwnerKey('nobody')).toThrow();
    expect(resourceName.safeParse('inventory/sku/sku-1').success).toBe(true);
    expect(resourceName.safeParse('held#x').success).toBe(false);
    expect(resourceName.safeParse('deadlock#x').success).toBe(false);
    expect(resourceName.safeParse('a b').success).toBe(false);
  });

  it('backs off with capped, jittered pauses', () => {
    expect(backoffMs(0, 0)).toBe(10);
    expect(backoffMs(0, 0.999)).toBe(20);
    expect(backoffMs(30, 0.5)).toBeLessThanOrEqual(400);
    expect(backoffMs(30, 0)).toBe(200);
  });

  it('refuses an item where an exclusive owner shares the resource', () => {
    const holder = { mode: 'X' as const, token: 1, leaseUntilMs: 1, grantedAtMs: 1, scopes: ['s'] };
    expect(() => assertLockInvariants({ ...emptyLock('r'), token: 1, owners: { 'tx#a': holder, 'tx#b': { ...holder, mode: 'S' } } })).toThrow(/exclusive/);
  });
});

describe('property: random operations', () => {
  const owners = ['tx#a', 'tx#b', 'tx#c', 'owner#w'];
  const op = fc.record({
    kind: fc.constantFrom('acquire', 'acquire', 'release', 'renew', 'giveUp'),
    owner: fc.constantFrom(...owners),
    mode: fc.constantFrom<LockMode>('S', 'X'),
    scope: fc.constantFrom('inventory', 'coordinator'),
    advanceMs: fc.integer({ min: 0, max: 6_000 }),
    verdict: fc.constantFrom<OwnerVerdict>('removable', 'protected'),
  });

  it('never lets conflicting owners hold at once; tokens only rise; grants carry the newest token', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 60 }), (ops) => {
        let item = emptyLock('r');
        let now = T0;
        let lastToken = 0;
        for (const o of ops) {
          now += o.advanceMs;
          const owner = parseOwnerKey(o.owner);
          if (o.kind === 'acquire') {
            let d = decideAcquire(item, request(owner, o.mode, now, { scope: o.scope, leaseMs: 5_000 }));
            if (d.kind === 'check') {
              const verdicts = new Map<string, OwnerVerdict>(d.owners.map((k) => [k, o.verdict]));
              d = decideAcquire(item, request(owner, o.mode, now, { scope: o.scope, leaseMs: 5_000 }), verdicts);
            }
            expect(d.kind).not.toBe('check');
            if (d.kind === 'granted') {
              // A new grant (or an upgrade) gets a token above every earlier one; a re-entrant
              // acquire keeps the token the owner's writes already carry.
              if (!d.reentrant || d.upgraded) expect(d.grant.token).toBeGreaterThan(lastToken);
              else expect(d.grant.token).toBe(item.owners[o.owner]!.token);
              // A takeover only ever removes expired leases.
              for (const k of d.takenOver) expect(item.owners[k]!.leaseUntilMs).toBeLessThanOrEqual(now);
              item = d.next;
            } else if (d.kind === 'wait' && d.next) item = d.next;
          } else if (o.kind === 'release') item = decideRelease(item, owner, o.scope) ?? item;
          else if (o.kind === 'renew') {
            const r = decideRenew(item, owner, 5_000, now);
            if (r.kind === 'renewed') item = r.next;
          } else item = withoutWaiter(item, owner) ?? item;
          assertLockInvariants(item);
          expect(item.token).toBeGreaterThanOrEqual(lastToken);
          lastToken = item.token;
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('the lock service acquiring for a transaction (memory store)', () => {
  it("reads the lock while its held-list entry is written, and writes the grant only once that entry is stored", async () => {
    const { lockStore: store, locks: service } = runnerPorts(() => T0, () => Promise.resolve());
    const calls: string[] = [];
    let storeHeld: () => void = () => undefined;
    const addHeld = store.addHeld.bind(store);
    store.addHeld = (owner, scope, resource, nowMs) => {
      calls.push('addHeld:start');
      // Held back until the test lets it through: the read must not wait for it.
      return new Promise<void>((resolve) => (storeHeld = resolve)).then(async () => {
        await addHeld(owner, scope, resource, nowMs);
        calls.push('addHeld:done');
      });
    };
    const get = store.get.bind(store);
    store.get = (resource) => {
      calls.push('get');
      return get(resource);
    };
    const put = store.put.bind(store);
    store.put = (next, expectedVersion, nowMs) => {
      calls.push('put');
      return put(next, expectedVersion, nowMs);
    };
    const granted = service.acquire({ resource: 'sku-1', owner: tx('t1'), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 0 });
    await vi.waitFor(() => expect(calls).toEqual(['addHeld:start', 'get']));
    storeHeld();
    await expect(granted).resolves.toMatchObject({ resource: 'sku-1', mode: 'X', leaseUntilMs: T0 + 10_000 });
    expect(calls).toEqual(['addHeld:start', 'get', 'addHeld:done', 'put']);
    expect(await store.held('tx#t1', 'inventory')).toEqual(['sku-1']);
  });
});
