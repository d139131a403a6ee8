// The lock service and the detector on dynalite: crashed owners and lease takeover guarded by the
// transaction log, fencing on the demo data, standalone owners, deadlocks resolved on demand, and
// release of everything a transaction locked.
import { TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DemoTable } from '../../src/demo/records';
import { INVENTORY_FIELDS, skuKey } from '../../src/demo/inventory';
import { LeaseLostError, LockWaitTimeoutError, TransactionAbortedError } from '../../src/locks/service';
import { type LockEnv, startLockEnv } from './local';

let env: LockEnv;

beforeAll(async () => {
  env = await startLockEnv();
});
afterAll(async () => {
  await env?.stop();
});

const tx = (id: string) => ({ kind: 'tx' as const, id });
const owner = (id: string) => ({ kind: 'owner' as const, id });

describe('a crashed lock owner', () => {
  it('loses its lock only after its lease expired and its transaction was aborted (it was still preparing)', async () => {
    const locks = env.service();
    const a = await env.newTx('crashed');
    const b = await env.newTx('next');
    const first = await locks.acquire({ resource: 'crash/1', owner: tx(a), mode: 'X', scope: 'inventory', leaseMs: 1_000, waitMs: 0 });
    // A "crashes": no renewal, no release. B waits past A's lease.
    const started = Date.now();
    const second = await locks.acquire({ resource: 'crash/1', owner: tx(b), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 5_000 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(first.leaseUntilMs - started - 5);
    expect(second.token).toBeGreaterThan(first.token);
    const crashed = await env.log.get(a);
    expect(crashed).toMatchObject({ status: 'ABORTING', decision: 'ABORT' });
    expect(crashed?.decisionReason).toMatch(/lock on crash\/1 expired while it was preparing/);
    const view = await locks.inspect('crash/1');
    expect(view?.owners.map((o) => o.owner)).toEqual([b]);
    await expect(locks.renew('crash/1', tx(a), 5_000)).rejects.toBeInstanceOf(LeaseLostError);
  });

  it('keeps its lock past the lease while it may still commit, and gives it up once it has committed', async () => {
    const locks = env.service();
    const c = await env.newTx('committing');
    const d = await env.newTx('waiting');
    await locks.acquire({ resource: 'crash/2', owner: tx(c), mode: 'X', scope: 'inventory', leaseMs: 1_000, waitMs: 0 });
    await env.setStatus(c, 'COMMITTING');
    await expect(locks.acquire({ resource: 'crash/2', owner: tx(d), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 2_000 })).rejects.toBeInstanceOf(
      LockWaitTimeoutError,
    );
    expect((await env.log.get(c))?.status).toBe('COMMITTING'); // never aborted
    await env.setStatus(c, 'COMMITTED');
    const grant = await locks.acquire({ resource: 'crash/2', owner: tx(d), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 0 });
    expect(grant.mode).toBe('X');
  });
});

describe('fencing on the demo data', () => {
  it('refuses the hold of an owner whose lease was taken over', async () => {
    const table = new DemoTable(env.doc, await env.participantTable('fence-inventory'));
    await table.putIfAbsent({ pk: skuKey('f1'), sku: 'f1', available: 10, held: 0, sold: 0, holds: {} });
    const locks = env.service();
    const slow = await env.newTx('paused');
    const fast = await env.newTx('fast');
    const old = await locks.acquire({ resource: 'fence/f1', owner: tx(slow), mode: 'X', scope: 'inventory', leaseMs: 1_000, waitMs: 0 });
    // `slow` pauses past its lease; `fast` takes the lock over and writes with its newer token.
    const fresh = await locks.acquire({ resource: 'fence/f1', owner: tx(fast), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 5_000 });
    expect(fresh.token).toBeGreaterThan(old.token);
    // The hold is a write the participant SDK applies in one TransactWriteItems with its barrier.
    const apply = (txId: string, quantity: number, token: number) =>
      env.doc.send(new TransactWriteCommand({ TransactItems: [table.placeHold(skuKey('f1'), txId, quantity, INVENTORY_FIELDS, token)] }));
    await apply(fast, 2, fresh.token);
    // `slow` wakes up and acts on what it read under a lock it no longer has: refused.
    await expect(apply(slow, 3, old.token)).rejects.toMatchObject({ name: 'TransactionCanceledException', CancellationReasons: [{ Code: 'ConditionalCheckFailed' }] });
    expect(await table.holdRefusal(skuKey('f1'), 3, INVENTORY_FIELDS, old.token)).toEqual({ kind: 'fenced', lastToken: fresh.token });
    const item = await table.get(skuKey('f1'));
    expect(item).toMatchObject({ available: 8, held: 2, lastToken: fresh.token, holds: { [fast]: 2 } });
  });
});

describe('standalone owners', () => {
  it('are exclusive until released or until their lease alone runs out; an expired owner cannot renew', async () => {
    // The lease runs out on an injected clock, not by waiting for it.
    let nowMs = Date.now();
    const locks = env.service({ nowMs: () => nowMs });
    const one = await locks.acquire({ resource: 'job/nightly', owner: owner('worker-1'), mode: 'X', scope: 'api', leaseMs: 1_000, waitMs: 0 });
    await expect(locks.acquire({ resource: 'job/nightly', owner: owner('worker-2'), mode: 'X', scope: 'api', leaseMs: 1_000, waitMs: 0 })).rejects.toBeInstanceOf(
      LockWaitTimeoutError,
    );
    const renewed = await locks.renew('job/nightly', owner('worker-1'), 1_000);
    expect(renewed.token).toBe(one.token);
    nowMs = renewed.leaseUntilMs + 20;
    const two = await locks.acquire({ resource: 'job/nightly', owner: owner('worker-2'), mode: 'X', scope: 'api', leaseMs: 5_000, waitMs: 0 });
    expect(two.token).toBeGreaterThan(one.token);
    await expect(locks.renew('job/nightly', owner('worker-1'), 1_000)).rejects.toBeInstanceOf(LeaseLostError);
    expect(await locks.release('job/nightly', owner('worker-2'), 'api')).toBe(true);
    expect(await locks.release('job/nightly', owner('worker-2'), 'api')).toBe(false);
  });

  it('share S and upgrade a sole S to X', async () => {
    const locks = env.service();
    await locks.acquire({ resource: 'cfg', owner: owner('r1'), mode: 'S', scope: 'api', leaseMs: 5_000, waitMs: 0 });
    await locks.acquire({ resource: 'cfg', owner: owner('r2'), mode: 'S', scope: 'api', leaseMs: 5_000, waitMs: 0 });
    await expect(locks.acquire({ resource: 'cfg', owner: owner('r1'), mode: 'X', scope: 'api', leaseMs: 5_000, waitMs: 100 })).rejects.toBeInstanceOf(LockWaitTimeoutError);
    await locks.release('cfg', owner('r2'), 'api');
    const up = await locks.acquire({ resource: 'cfg', owner: owner('r1'), mode: 'X', scope: 'api', leaseMs: 5_000, waitMs: 0 });
    expect(up.mode).toBe('X');
    expect((await locks.inspect('cfg'))?.waiters).toEqual([]);
  });
});

describe('deadlocks', () => {
  it('resolves a two-way deadlock on demand: the youngest is aborted and stops waiting, the other gets the lock', async () => {
    const locks = env.service();
    const older = await env.newTx('older');
    const younger = await env.newTx('younger');
    await locks.acquire({ resource: 'dl/a', owner: tx(older), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 0 });
    await locks.acquire({ resource: 'dl/b', owner: tx(younger), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 0 });
    const started = Date.now();
    const olderWaits = locks.acquire({ resource: 'dl/b', owner: tx(older), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 10_000 });
    const youngerWaits = locks.acquire({ resource: 'dl/a', owner: tx(younger), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 10_000 });
    await expect(youngerWaits).rejects.toBeInstanceOf(TransactionAbortedError);
    // What the participant SDK does after the NO vote: abort releases everything it locked.
    expect(await locks.releaseAll(tx(younger), 'inventory')).toEqual(['dl/a', 'dl/b']);
    const grant = await olderWaits;
    expect(grant.resource).toBe('dl/b');
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(await env.log.get(younger)).toMatchObject({ status: 'ABORTING' });
    expect((await env.log.get(older))?.status).toBe('PREPARING');
    const { items } = await env.store.listDeadlocks(10);
    const record = items.find((r) => r.victim === younger);
    expect(record).toMatchObject({ trigger: 'on-demand', cycle: expect.arrayContaining([older, younger]) });
    expect(record?.edges.map((e) => e.resource).sort()).toEqual(['dl/a', 'dl/b']);
  });

  it('resolves a three-way deadlock with one victim', async () => {
    const locks = env.service({ detect: undefined });
    const ids = [await env.newTx('t3'), await env.newTx('t3'), await env.newTx('t3')];
    const res = ['dl3/x', 'dl3/y', 'dl3/z'];
    for (let i = 0; i < 3; i++) await locks.acquire({ resource: res[i]!, owner: tx(ids[i]!), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 0 });
    const started = Date.now();
    const waits = ids.map((id, i) =>
      locks.acquire({ resource: res[(i + 1) % 3]!, owner: tx(id), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 10_000 }).then(
        async () => {
          // Commits: releases both, which lets the next one in the former cycle go.
          await env.setStatus(id, 'COMMITTED');
          await locks.releaseAll(tx(id), 'inventory');
          return 'granted';
        },
        async (err: unknown) => {
          if (!(err instanceof TransactionAbortedError)) throw err;
          await locks.releaseAll(tx(id), 'inventory');
          return 'victim';
        },
      ),
    );
    // Every one of them waits for the next one's lock: the cycle is complete.
    await vi.waitFor(
      async () => {
        for (const r of res) expect((await locks.inspect(r))?.waiters).toHaveLength(1);
      },
      { timeout: 2_000, interval: 20 },
    );
    // The scheduled path: one run of the detector (this service has no on-demand detection).
    const report = await env.detector.run('schedule');
    expect(report.resolved).toHaveLength(1);
    expect(report.resolved[0]!.victim).toBe(ids[2]);
    expect(report.resolved[0]!.cycle).toHaveLength(3);
    const outcomes = await Promise.all(waits);
    expect(Date.now() - started).toBeLessThan(3_000); // far inside the 10 s leases: nobody was taken over
    expect(outcomes.filter((o) => o === 'victim')).toHaveLength(1);
    expect(outcomes[2]).toBe('victim');
    // Nothing left to find.
    expect((await env.detector.run('schedule')).resolved).toEqual([]);
  });
});

describe('release', () => {
  it('releases everything a transaction scope locked, leaving nothing behind', async () => {
    const locks = env.service();
    const t = await env.newTx('rel');
    for (const r of ['rel/1', 'rel/2', 'rel/3']) await locks.acquire({ resource: r, owner: tx(t), mode: 'X', scope: 'inventory', leaseMs: 10_000, waitMs: 0 });
    await locks.acquire({ resource: 'rel/2', owner: tx(t), mode: 'X', scope: 'coordinator', leaseMs: 10_000, waitMs: 0 });
    expect(await locks.releaseAll(tx(t), 'inventory')).toEqual(['rel/1', 'rel/2', 'rel/3']);
    expect((await locks.inspect('rel/1'))?.owners).toEqual([]);
    expect((await locks.inspect('rel/2'))?.owners.map((o) => o.scopes)).toEqual([['coordinator']]);
    expect(await env.store.held(`tx#${t}`, 'inventory')).toEqual([]);
    expect(await locks.releaseAll(tx(t), 'coordinator')).toEqual(['rel/2']);
    expect((await locks.inspect('rel/2'))?.owners).toEqual([]);
  });
});
