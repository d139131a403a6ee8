// Deadlocks end to end on the embedded stack: the demo inventory locks each SKU of an order in the
// order the order lists them, so orders that list the same SKUs in opposite orders deadlock; the
// detector (on demand, from the waiting side, and on its 1 s local schedule) aborts the youngest of
// each cycle and wakes its execution. Also: the last unit of a SKU, locks a request declares for the
// coordinator to take, and the standalone lock API.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DemoTable } from '../../src/demo/records';
import { skuKey, skuLock } from '../../src/demo/inventory';
import { documentClient } from '../../src/participant/runner';
import type { TxView } from '../../src/core/transaction';
import { orderBody, startHarness, type Harness } from './harness';

/** The stated bound: a deadlock is broken and every transaction of it has ended within this. */
const DEADLOCK_BOUND_MS = 10_000;
/** Inventory pauses this long between two SKUs (holding the first): both orders lock their first SKU. */
const PAUSE_MS = 500;

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ locks: { pauseBetweenLocksMs: PAUSE_MS } });
});
afterAll(async () => {
  await h?.stop();
});

async function inventory(sku: string) {
  return (await h.demo.shop.getInventory(sku))!;
}

/** Every lock is released: participants release after they acknowledge, so allow a few seconds. */
async function expectNoLocksLeft(skus: string[], withinMs = 5_000) {
  await vi.waitFor(
    async () => {
      for (const sku of skus) {
        const view = await h.demo.locks!.locks.inspect(skuLock(sku));
        expect({ sku, owners: view?.owners ?? [], waiters: view?.waiters ?? [] }).toEqual({ sku, owners: [], waiters: [] });
      }
    },
    { timeout: withinMs, interval: 200 },
  );
}

/** Start the orders together, wait for all, and check the one-victim-per-cycle outcome. */
async function runCycle(skuOrders: string[][]) {
  const before = new Map<string, number>();
  for (const sku of new Set(skuOrders.flat())) before.set(sku, (await inventory(sku)).sold);
  const started = Date.now();
  const txIds = await Promise.all(skuOrders.map((skus, i) => h.startOrder({ items: skus.map((sku) => ({ sku, quantity: 1 })), account: `acct-${60 + i}`, amount: 100 })));
  const ended = await Promise.all(txIds.map((id) => h.waitForEnd(id, DEADLOCK_BOUND_MS + 5_000)));
  const elapsedMs = Date.now() - started;
  await h.waitForQuiet();
  const victims = ended.filter((t) => t.status === 'ABORTED');
  const committed = ended.filter((t) => t.status === 'COMMITTED');
  return { txIds, ended, victims, committed, elapsedMs, before };
}

function youngest(views: TxView[]): TxView {
  return views.reduce((a, b) => (b.createdAt > a.createdAt || (b.createdAt === a.createdAt && b.txId > a.txId) ? b : a));
}

describe('deadlock detection', () => {
  it('breaks a two-way deadlock (opposite SKU orders): one victim, the youngest; the other commits', async () => {
    const { ended, victims, committed, elapsedMs, before, txIds } = await runCycle([
      ['sku-30', 'sku-31'],
      ['sku-31', 'sku-30'],
    ]);
    console.log(`[deadlock] two-way resolved and ended in ${elapsedMs} ms`);
    expect(victims).toHaveLength(1);
    expect(committed).toHaveLength(1);
    expect(victims[0]!.decision?.reason).toMatch(/^deadlock victim: youngest of the cycle/);
    expect(victims[0]!.txId).toBe(youngest(ended).txId);
    expect(elapsedMs).toBeLessThan(DEADLOCK_BOUND_MS);

    const records = (await h.request('GET', '/deadlocks?limit=100')).body.items as { victim: string; cycle: string[]; edges: { resource: string }[] }[];
    const record = records.find((r) => r.victim === victims[0]!.txId);
    expect(record?.cycle.sort()).toEqual([...txIds].sort());
    expect(record?.edges.map((e) => e.resource).sort()).toEqual([skuLock('sku-30'), skuLock('sku-31')]);

    // Stock: only the committed order sold; nothing held, no lock left.
    for (const sku of ['sku-30', 'sku-31']) {
      expect(await inventory(sku)).toMatchObject({ held: 0, sold: before.get(sku)! + 1 });
    }
    await expectNoLocksLeft(['sku-30', 'sku-31']);
  });

  it('breaks a three-way deadlock with exactly one victim; the other two commit', async () => {
    const { victims, committed, elapsedMs, ended } = await runCycle([
      ['sku-40', 'sku-41'],
      ['sku-41', 'sku-42'],
      ['sku-42', 'sku-40'],
    ]);
    console.log(`[deadlock] three-way resolved and ended in ${elapsedMs} ms`);
    expect(victims).toHaveLength(1);
    expect(committed).toHaveLength(2);
    expect(victims[0]!.txId).toBe(youngest(ended).txId);
    expect(elapsedMs).toBeLessThan(DEADLOCK_BOUND_MS);
    expect((await h.demo.shop.demoTotals()).openHolds).toBe(0);
    await expectNoLocksLeft(['sku-40', 'sku-41', 'sku-42']);
  });
});

describe('the last unit of a SKU', () => {
  it('goes to exactly one of two orders', async () => {
    const table = new DemoTable(documentClient(h.stack.dynamodb), h.demo.tables.inventory!);
    await table.putIfAbsent({ pk: skuKey('last-1'), sku: 'last-1', available: 1, held: 0, sold: 0, holds: {} });
    const txIds = await Promise.all([0, 1].map((i) => h.startOrder({ items: [{ sku: 'last-1', quantity: 1 }], account: `acct-${70 + i}`, amount: 100 })));
    const ended = await Promise.all(txIds.map((id) => h.waitForEnd(id)));
    await h.waitForQuiet();
    expect(ended.map((t) => t.status).sort()).toEqual(['ABORTED', 'COMMITTED']);
    expect(ended.find((t) => t.status === 'ABORTED')!.decision?.reason).toMatch(/insufficient stock for last-1: 0 available/);
    expect(await inventory('last-1')).toEqual({ sku: 'last-1', available: 0, held: 0, sold: 1 });
    await expectNoLocksLeft(['last-1']);
  });
});

describe('locks a request declares', () => {
  it('are taken by the coordinator before PREPARE (waiting for a holder), and released after Finalize', async () => {
    const resource = 'ledger/acct-80';
    const path = `/locks/${encodeURIComponent(resource)}`;
    const held = await h.request('POST', path, { owner: 'batch-job', leaseSeconds: 30 });
    expect(held.status).toBe(200);
    const { body } = orderBody({ items: [{ sku: 'sku-50', quantity: 1 }], account: 'acct-80', amount: 100 });
    body.participants[1] = { ...body.participants[1]!, resources: [resource] } as (typeof body.participants)[number];
    // The start holds its request while the coordinator waits behind the standalone owner (up to
    // 5 s per resource): no participant is asked to prepare yet.
    const starting = h.request('POST', '/transactions', body);
    const waiters = async () => (await h.request('GET', path)).body.waiters.map((w: { owner: string }) => w.owner) as string[];
    await vi.waitFor(async () => expect(await waiters()).toHaveLength(1), { timeout: 10_000, interval: 50 });
    const [txId] = await waiters();
    const waiting = await h.request('GET', `/transactions/${txId}`);
    expect(waiting.body.status).toBe('PREPARING');
    expect(waiting.body.participants.every((p: { vote?: string }) => p.vote === undefined)).toBe(true);

    expect((await h.request('DELETE', `${path}?owner=batch-job`)).status).toBe(200);
    const started = await starting;
    expect(started).toMatchObject({ status: 202, body: { txId, status: 'PREPARING' } });
    const tx = await h.waitForEnd(txId!, 20_000);
    expect(tx.status).toBe('COMMITTED');
    const after = (await h.request('GET', path)).body;
    expect(after.owners).toEqual([]);
    expect(after.token).toBeGreaterThan(held.body.token);
  });
});

describe('the standalone lock API', () => {
  it('acquires, refuses a second owner, renews, inspects and releases, with rising fencing tokens', async () => {
    const path = '/locks/report-2026';
    const first = await h.request('POST', path, { owner: 'node-a', mode: 'X', leaseSeconds: 10 });
    expect(first).toMatchObject({ status: 200, body: { resource: 'report-2026', owner: 'node-a', mode: 'X' } });
    const refused = await h.request('POST', path, { owner: 'node-b', leaseSeconds: 10, waitSeconds: 0.2 });
    expect(refused).toMatchObject({ status: 409, body: { error: { code: 'LockHeld', holders: ['node-a'] } } });
    const renewed = await h.request('PUT', path, { owner: 'node-a', leaseSeconds: 20 });
    expect(renewed.status).toBe(200);
    expect(renewed.body.token).toBe(first.body.token);
    expect(Date.parse(renewed.body.leaseUntil)).toBeGreaterThan(Date.parse(first.body.leaseUntil));
    const view = await h.request('GET', path);
    expect(view.body).toMatchObject({ resource: 'report-2026', mode: 'X', owners: [{ owner: 'node-a', kind: 'owner', scopes: ['api'] }] });
    expect((await h.request('DELETE', path, { owner: 'node-a' })).status).toBe(200);
    expect((await h.request('DELETE', path, { owner: 'node-a' })).status).toBe(404);
    const second = await h.request('POST', path, { owner: 'node-b', leaseSeconds: 10 });
    expect(second.body.token).toBeGreaterThan(first.body.token);
    expect((await h.request('PUT', path, { owner: 'node-a', leaseSeconds: 10 })).body.error.code).toBe('LeaseLost');
    expect((await h.request('POST', path, { owner: 'node-b', leaseSeconds: 0 })).status).toBe(400);
    expect((await h.request('GET', '/locks/held%23x')).status).toBe(400);
    expect((await h.request('GET', '/locks/nothing-here')).status).toBe(404);
  });
});
