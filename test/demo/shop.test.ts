import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ParticipantMessage, ReplyMessage } from '../../src/core/messages';
import { type ParticipantRunner, createRunner } from '../../src/participant/runner';
import { DEMO_SERVICES, type DemoService, type DemoViews, createDemoTables, demoParticipants, demoTableNames, demoViews, seedDemo, startDemoShop } from '../../src/demo/shop';
import { documentClient } from '../../src/participant/runner';
import { type LocalAws, startLocalAws } from '../support/aws';
import { memoryLogger, message, newTxId } from '../support/fixtures';

const PREFIX = 'shop-test-';
const SEED = { skus: 10, stock: 1000, accounts: 5, balance: 100_000 };

let local: LocalAws;
let replyQueueUrl: string;
let runners: Record<DemoService, ParticipantRunner>;
let views: DemoViews;

beforeAll(async () => {
  local = await startLocalAws({ dynamodb: true, sqs: true });
  await createDemoTables(local.dynamodb, { prefix: PREFIX });
  await createDemoTables(local.dynamodb, { prefix: PREFIX });
  await seedDemo(local.dynamodb, { prefix: PREFIX, ...SEED });
  replyQueueUrl = await local.scratchQueue('demo-replies');
  const participants = demoParticipants(documentClient(local.dynamodb), PREFIX);
  const tables = demoTableNames(PREFIX);
  const runner = (s: DemoService) =>
    createRunner({ participant: participants[s], replyQueueUrl, table: tables[s], sqs: local.sqs, dynamodb: local.dynamodb, logger: memoryLogger() });
  runners = { inventory: runner('inventory'), payment: runner('payment'), shipping: runner('shipping'), order: runner('order') };
  views = demoViews(local.dynamodb, { prefix: PREFIX });
});
afterAll(async () => {
  await local.stop();
});

async function deliver(service: DemoService, type: ParticipantMessage['type'], txId: string, operation?: unknown): Promise<ReplyMessage | undefined> {
  await runners[service].handle(message(type, txId, service, operation));
  const replies = await local.replies(replyQueueUrl);
  expect(replies.length).toBeLessThanOrEqual(1);
  return replies[0];
}

const voteOf = (reply: ReplyMessage | undefined) => (reply?.type === 'VOTE' ? reply.vote : undefined);

describe('demo tables and seed', () => {
  it('creates tables idempotently and never overwrites seeded state', async () => {
    const txId = newTxId();
    expect(voteOf(await deliver('inventory', 'PREPARE', txId, { items: [{ sku: 'sku-10', quantity: 7 }] }))).toBe('YES');
    await seedDemo(local.dynamodb, { prefix: PREFIX, ...SEED });
    expect(await views.getInventory('sku-10')).toEqual({ sku: 'sku-10', available: 993, held: 7, sold: 0 });
    await deliver('inventory', 'ABORT', txId);
    expect(await views.getInventory('sku-10')).toEqual({ sku: 'sku-10', available: 1000, held: 0, sold: 0 });
    expect(await views.getInventory('sku-11')).toBeUndefined();
    expect(await views.getAccount('acct-5')).toEqual({ account: 'acct-5', balance: 100_000, held: 0, charged: 0 });
  });
});

describe('inventory', () => {
  it('votes NO for more than is available and leaves no hold, not even on the SKUs it could hold', async () => {
    const txId = newTxId();
    const reply = await deliver('inventory', 'PREPARE', txId, { items: [{ sku: 'sku-1', quantity: 5 }, { sku: 'sku-2', quantity: 1001 }] });
    expect(reply).toMatchObject({ type: 'VOTE', vote: 'NO', reason: 'insufficient stock for sku-2: 1000 available, 1001 requested' });
    expect(await views.getInventory('sku-1')).toEqual({ sku: 'sku-1', available: 1000, held: 0, sold: 0 });
    expect(await views.getInventory('sku-2')).toEqual({ sku: 'sku-2', available: 1000, held: 0, sold: 0 });
    expect((await views.demoTotals()).openHolds).toBe(0);
  });

  it('votes NO for an unknown SKU and for an invalid operation', async () => {
    expect(await deliver('inventory', 'PREPARE', newTxId(), { items: [{ sku: 'sku-999', quantity: 1 }] })).toMatchObject({ vote: 'NO', reason: 'unknown sku sku-999' });
    const invalid = await deliver('inventory', 'PREPARE', newTxId(), { items: [{ sku: 'sku-1', quantity: 0 }] });
    expect(invalid).toMatchObject({ vote: 'NO' });
    expect(invalid?.type === 'VOTE' && invalid.reason).toMatch(/^invalid operation: items\.0\.quantity/);
  });

  it('sums the same SKU listed twice into one hold, and sells it exactly once under duplicates', async () => {
    const txId = newTxId();
    const operation = { items: [{ sku: 'sku-3', quantity: 2 }, { sku: 'sku-3', quantity: 3 }] };
    await deliver('inventory', 'PREPARE', txId, operation);
    expect(voteOf(await deliver('inventory', 'PREPARE', txId, operation))).toBe('YES');
    expect(await views.getInventory('sku-3')).toEqual({ sku: 'sku-3', available: 995, held: 5, sold: 0 });
    await deliver('inventory', 'COMMIT', txId);
    expect(await deliver('inventory', 'COMMIT', txId)).toMatchObject({ type: 'ACK', phase: 'COMMIT' });
    expect(await views.getInventory('sku-3')).toEqual({ sku: 'sku-3', available: 995, held: 0, sold: 5 });
  });
});

describe('payment, shipping and order', () => {
  it('holds and charges money, and refuses an amount beyond the balance', async () => {
    expect(await deliver('payment', 'PREPARE', newTxId(), { account: 'acct-2', amount: 100_001 })).toMatchObject({ vote: 'NO' });
    expect(await deliver('payment', 'PREPARE', newTxId(), { account: 'acct-404', amount: 1 })).toMatchObject({ vote: 'NO', reason: 'unknown account acct-404' });
    const txId = newTxId();
    expect(voteOf(await deliver('payment', 'PREPARE', txId, { account: 'acct-2', amount: 2_500 }))).toBe('YES');
    expect(await views.getAccount('acct-2')).toEqual({ account: 'acct-2', balance: 97_500, held: 2_500, charged: 0 });
    await deliver('payment', 'COMMIT', txId);
    expect(await views.getAccount('acct-2')).toEqual({ account: 'acct-2', balance: 97_500, held: 0, charged: 2_500 });
  });

  it('schedules a shipment and confirms an order on commit; another transaction for the same order votes NO', async () => {
    const txId = newTxId();
    const orderId = 'order-commit';
    expect(voteOf(await deliver('shipping', 'PREPARE', txId, { orderId, address: '1 Main St' }))).toBe('YES');
    expect(voteOf(await deliver('order', 'PREPARE', txId, { orderId, items: [{ sku: 'sku-1', quantity: 1 }], total: 100 }))).toBe('YES');
    expect(await views.getShipment(orderId)).toEqual({ orderId, status: 'PENDING' });
    expect(await deliver('shipping', 'PREPARE', newTxId(), { orderId, address: 'elsewhere' })).toMatchObject({ vote: 'NO', reason: `shipment exists for order ${orderId}` });
    expect(await deliver('order', 'PREPARE', newTxId(), { orderId, items: [{ sku: 'sku-1', quantity: 1 }], total: 1 })).toMatchObject({ vote: 'NO' });
    await deliver('shipping', 'COMMIT', txId);
    await deliver('order', 'COMMIT', txId);
    expect(await views.getShipment(orderId)).toEqual({ orderId, status: 'SCHEDULED' });
    expect(await views.getOrder(orderId)).toEqual({ orderId, status: 'CONFIRMED' });
  });

  it('removes the shipment and cancels the order on abort', async () => {
    const txId = newTxId();
    const orderId = 'order-abort';
    await deliver('shipping', 'PREPARE', txId, { orderId, address: '1 Main St' });
    await deliver('order', 'PREPARE', txId, { orderId, items: [{ sku: 'sku-1', quantity: 1 }], total: 100 });
    await deliver('shipping', 'ABORT', txId);
    await deliver('order', 'ABORT', txId);
    await deliver('order', 'ABORT', txId);
    expect(await views.getShipment(orderId)).toBeUndefined();
    expect(await views.getOrder(orderId)).toEqual({ orderId, status: 'CANCELLED' });
  });
});

describe('conservation', () => {
  interface Order {
    items: { sku: number; quantity: number }[];
    account: number;
    amount: number;
    abort: boolean;
    abortFirst: boolean;
    duplicates: boolean;
  }
  const order: fc.Arbitrary<Order> = fc.record({
    items: fc.array(fc.record({ sku: fc.integer({ min: 1, max: 4 }), quantity: fc.integer({ min: 1, max: 600 }) }), { minLength: 1, maxLength: 3 }),
    account: fc.integer({ min: 1, max: 3 }),
    amount: fc.integer({ min: 1, max: 60_000 }),
    abort: fc.boolean(),
    abortFirst: fc.boolean(),
    duplicates: fc.boolean(),
  });

  /** A stand-in coordinator: PREPARE everywhere, COMMIT only if every vote is YES, else ABORT. */
  async function transact(o: Order): Promise<'COMMIT' | 'ABORT'> {
    const txId = newTxId('conserve');
    const orderId = `o-${txId}`;
    const items = o.items.map((i) => ({ sku: `sku-${i.sku}`, quantity: i.quantity }));
    const operations: Record<DemoService, unknown> = {
      inventory: { items },
      payment: { account: `acct-${o.account}`, amount: o.amount },
      shipping: { orderId, address: 'x' },
      order: { orderId, items, total: o.amount },
    };
    if (o.abort && o.abortFirst) {
      for (const s of DEMO_SERVICES) await deliver(s, 'ABORT', txId);
    }
    const votes = [];
    for (const s of DEMO_SERVICES) {
      votes.push(voteOf(await deliver(s, 'PREPARE', txId, operations[s])));
      if (o.duplicates) expect(voteOf(await deliver(s, 'PREPARE', txId, operations[s]))).toBe(votes.at(-1));
    }
    const decision = !o.abort && votes.every((v) => v === 'YES') ? 'COMMIT' : 'ABORT';
    for (const s of DEMO_SERVICES) {
      await deliver(s, decision, txId);
      if (o.duplicates) await deliver(s, decision, txId);
    }
    const neverPrepared = o.abort && o.abortFirst;
    expect(await views.getOrder(orderId)).toEqual(decision === 'COMMIT' ? { orderId, status: 'CONFIRMED' } : neverPrepared ? undefined : { orderId, status: 'CANCELLED' });
    expect(await views.getShipment(orderId)).toEqual(decision === 'COMMIT' ? { orderId, status: 'SCHEDULED' } : undefined);
    return decision;
  }

  it('keeps stock and money constant and leaves no hold after any mix of commits and aborts', async () => {
    const before = await views.demoTotals();
    expect(before).toMatchObject({ skus: SEED.skus, accounts: SEED.accounts, openHolds: 0 });
    let commits = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(order, { minLength: 1, maxLength: 6 }), async (orders) => {
        for (const o of orders) if ((await transact(o)) === 'COMMIT') commits++;
        const totals = await views.demoTotals();
        expect(totals).toEqual({ ...before, openHolds: 0 });
        for (let sku = 1; sku <= 4; sku++) expect((await views.getInventory(`sku-${sku}`))!.available).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 8, seed: 42 },
    );
    expect(commits).toBeGreaterThan(0);
  });
});

describe('startDemoShop', () => {
  it('runs the four services from their queues until stopped', async () => {
    const queueUrls: Record<string, string> = {};
    for (const s of DEMO_SERVICES) queueUrls[s] = await local.scratchQueue(`shop-${s}`);
    // Each service speaks on its own reply queue.
    const replyQueueUrls: Record<string, string> = {};
    for (const s of DEMO_SERVICES) replyQueueUrls[s] = await local.scratchQueue(`shop-${s}-replies`);
    const shop = startDemoShop({ queueUrls, replyQueueUrls, prefix: PREFIX, sqs: local.sqs, dynamodb: local.dynamodb, logger: memoryLogger() });
    expect(shop.services).toEqual([...DEMO_SERVICES]);
    const txId = newTxId('shop');
    const orderId = 'order-shop';
    const before = await shop.getInventory('sku-7');
    const operations: Record<DemoService, unknown> = {
      inventory: { items: [{ sku: 'sku-7', quantity: 3 }] },
      payment: { account: 'acct-4', amount: 900 },
      shipping: { orderId, address: '2 High St' },
      order: { orderId, items: [{ sku: 'sku-7', quantity: 3 }], total: 900 },
    };
    for (const s of DEMO_SERVICES) await local.send(queueUrls[s]!, message('PREPARE', txId, s, operations[s]));
    const votes = await collectFrom(replyQueueUrls, 4);
    expect(votes.map((m) => (m.type === 'VOTE' ? `${m.participant}:${m.vote}` : '')).sort()).toEqual(['inventory:YES', 'order:YES', 'payment:YES', 'shipping:YES']);
    for (const s of DEMO_SERVICES) await local.send(queueUrls[s]!, message('COMMIT', txId, s));
    const acks = await collectFrom(replyQueueUrls, 4);
    const stopStarted = Date.now();
    await shop.stop();

    expect(Date.now() - stopStarted).toBeLessThan(1_000);
    expect(acks.every((m) => m.type === 'ACK' && m.phase === 'COMMIT')).toBe(true);
    expect(await shop.getInventory('sku-7')).toEqual({ ...before, available: before!.available - 3, sold: before!.sold + 3 });
    expect(await shop.getOrder(orderId)).toEqual({ orderId, status: 'CONFIRMED' });
    expect(await shop.getShipment(orderId)).toEqual({ orderId, status: 'SCHEDULED' });
    expect((await shop.getAccount('acct-4'))?.held).toBe(0);
  });

  it('starts only the services asked for that have a queue, and rejects unknown ones', async () => {
    const replyQueueUrls = { payment: replyQueueUrl, order: replyQueueUrl };
    const shop = startDemoShop({ queueUrls: { payment: await local.scratchQueue('only-payment') }, replyQueueUrls, services: ['payment', 'order'], prefix: PREFIX, sqs: local.sqs, dynamodb: local.dynamodb, logger: memoryLogger() });
    expect(shop.services).toEqual(['payment']);
    await shop.stop();
    expect(() => startDemoShop({ queueUrls: {}, replyQueueUrls: {}, services: ['warehouse'] })).toThrow(/unknown demo services: warehouse/);
  });
});

/** Replies from every service's own reply queue, each checked to name the queue's owner. */
async function collectFrom(queueUrls: Record<string, string>, count: number): Promise<ReplyMessage[]> {
  const got: ReplyMessage[] = [];
  await vi.waitFor(
    async () => {
      for (const [service, url] of Object.entries(queueUrls)) {
        for (const reply of await local.replies(url)) {
          expect(reply.participant).toBe(service);
          got.push(reply);
        }
      }
      expect(got.length).toBeGreaterThanOrEqual(count);
    },
    { timeout: 20_000, interval: 50 },
  );
  return got;
}
