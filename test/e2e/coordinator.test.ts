// End to end on the embedded stack: API Gateway -> api λ -> DynamoDB log -> SQS -> demo services
// (participant SDK) -> each one's reply queue -> reply λ -> DynamoDB (the last vote decides and sends
// phase two), with a Step Functions supervisor per group of transactions, all provisioned from the
// synthesized CDK app. `silent` is a participant with queues and no consumer: it never answers.
import { SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TxLog, documentClient } from '../../src/aws/log-store';
import type { TxView } from '../../src/core/transaction';
import { orderBody, startHarness, type Harness } from './harness';

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ context: { participants: ['inventory', 'payment', 'shipping', 'order', 'silent'] } });
});

afterAll(async () => {
  await h?.stop();
});

describe('a 4-participant order', () => {
  it('commits, and every service shows it', async () => {
    const before = await h.demo.shop.getInventory('sku-10');
    const sfnBefore = h.stack.stepFunctions.stats();
    const { orderId, body } = orderBody({ items: [{ sku: 'sku-10', quantity: 3 }, { sku: 'sku-11', quantity: 1 }], account: 'acct-10', amount: 4200 });
    const started = await h.request('POST', '/transactions', body);
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ status: 'PREPARING', links: { self: `/transactions/${started.body.txId}` } });

    const tx = await h.waitForEnd(started.body.txId);
    expect(tx.status).toBe('COMMITTED');
    expect(tx.decision).toMatchObject({ outcome: 'COMMIT', reason: 'every participant voted YES' });
    expect(tx.participants.map((p) => [p.service, p.vote, p.ack])).toEqual([
      ['inventory', 'YES', 'COMMIT'],
      ['payment', 'YES', 'COMMIT'],
      ['shipping', 'YES', 'COMMIT'],
      ['order', 'YES', 'COMMIT'],
    ]);
    expect(tx.finishedAt).toBeDefined();
    // The hot path never touches Step Functions: no callbacks, and at most one execution started
    // (the supervisor of the transaction's group, if this is the group's first transaction).
    const sfnAfter = h.stack.stepFunctions.stats();
    expect(sfnAfter.callbacks - sfnBefore.callbacks).toBe(0);
    expect(sfnAfter.executionsStarted - sfnBefore.executionsStarted).toBeLessThanOrEqual(1);

    expect(await h.demo.shop.getInventory('sku-10')).toEqual({ sku: 'sku-10', available: before!.available - 3, held: 0, sold: before!.sold + 3 });
    expect((await h.request('GET', '/demo/accounts/acct-10')).body).toEqual({ account: 'acct-10', balance: 100_000 - 4200, held: 0, charged: 4200 });
    expect((await h.request('GET', `/demo/orders/${orderId}`)).body).toEqual({ orderId, status: 'CONFIRMED' });
    expect((await h.request('GET', `/demo/shipments/${orderId}`)).body).toEqual({ orderId, status: 'SCHEDULED' });
  });

  it('for more stock than exists aborts, and no service keeps any effect', async () => {
    const sku = await h.demo.shop.getInventory('sku-12');
    const acct = await h.demo.shop.getAccount('acct-12');
    const { orderId, body } = orderBody({ items: [{ sku: 'sku-13', quantity: 1 }, { sku: 'sku-12', quantity: 5000 }], account: 'acct-12', amount: 900 });
    const started = await h.request('POST', '/transactions', body);
    const tx = await h.waitForEnd(started.body.txId);
    expect(tx.status).toBe('ABORTED');
    expect(tx.decision?.outcome).toBe('ABORT');
    expect(tx.decision?.reason).toMatch(/^inventory voted NO/);
    await h.waitForQuiet();

    expect(await h.demo.shop.getInventory('sku-12')).toEqual(sku);
    expect(await h.demo.shop.getInventory('sku-13')).toEqual({ sku: 'sku-13', available: 1000, held: 0, sold: 0 });
    expect(await h.demo.shop.getAccount('acct-12')).toEqual(acct);
    const order = await h.demo.shop.getOrder(orderId);
    expect(order === undefined || order.status === 'CANCELLED').toBe(true);
    expect(await h.demo.shop.getShipment(orderId)).toBeUndefined();
  });
});

describe('a participant that never answers', () => {
  it('aborts the transaction at the prepare timeout, and the others release what they held', async () => {
    const { orderId, body } = orderBody(
      { items: [{ sku: 'sku-14', quantity: 2 }], account: 'acct-14', amount: 700, extra: [{ service: 'silent', operation: {} }] },
      { prepareSeconds: 2 },
    );
    const t0 = Date.now();
    const started = await h.request('POST', '/transactions', body);
    const txId = started.body.txId as string;
    // silent may have prepared all the same (its YES lost): the abort phase re-sends ABORT to it until
    // it acknowledges, while the others are done.
    await expect
      .poll(async () => ((await h.request('GET', `/transactions/${txId}`)).body as TxView).participants.filter((p) => p.ack === 'ABORT').length, { timeout: 15_000, interval: 100 })
      .toBe(4);
    const open = (await h.request('GET', `/transactions/${txId}`)).body as TxView;
    expect(open).toMatchObject({ status: 'ABORTING', decision: { outcome: 'ABORT' } });
    expect(open.participants.find((p) => p.service === 'silent')?.ack).toBeUndefined();
    await h.sendRaw(h.stack.outputs.replyQueueUrls.silent!, { v: 1, type: 'ACK', txId, participant: 'silent', phase: 'ABORT' });
    const tx = await h.waitForEnd(txId, 15_000);
    const elapsedMs = Date.now() - t0;
    expect(tx.status).toBe('ABORTED');
    expect(tx.decision?.reason).toBe('prepare deadline passed');
    expect(tx.participants.find((p) => p.service === 'silent')?.vote).toBeUndefined();
    expect(elapsedMs).toBeGreaterThanOrEqual(2000);
    // The four demo services voted YES and were told to abort; each acknowledged.
    expect(tx.participants.filter((p) => p.service !== 'silent').map((p) => [p.vote, p.ack])).toEqual(Array(4).fill(['YES', 'ABORT']));
    expect(await h.demo.shop.getInventory('sku-14')).toEqual({ sku: 'sku-14', available: 1000, held: 0, sold: 0 });
    expect(await h.demo.shop.getAccount('acct-14')).toMatchObject({ balance: 100_000, held: 0, charged: 0 });
    expect(await h.demo.shop.getOrder(orderId)).toEqual({ orderId, status: 'CANCELLED' });
  });
});

describe('duplicate delivery', () => {
  it('of every message type changes nothing', async () => {
    const q = h.stack.outputs.participantQueues;
    // Each participant's replies on its own reply queue, as the original ones came.
    const reply = h.stack.outputs.replyQueueUrls;
    const items = [{ sku: 'sku-15', quantity: 4 }];
    const committed = orderBody({ items, account: 'acct-15', amount: 1500 });
    const aborted = orderBody({ items: [{ sku: 'sku-16', quantity: 99_999 }], account: 'acct-16', amount: 100 });

    const commitTx = await h.startOrder({ orderId: committed.orderId, items, account: 'acct-15', amount: 1500 });
    // A duplicate PREPARE racing the coordinator's own.
    for (const p of committed.body.participants) {
      await h.sendRaw(q[p.service]!, { v: 1, type: 'PREPARE', txId: commitTx, participant: p.service, operation: p.operation, deadlineAt: Date.now() + 10_000, attempt: 1 });
    }
    const abortTx = await h.startOrder({ orderId: aborted.orderId, items: [{ sku: 'sku-16', quantity: 99_999 }], account: 'acct-16', amount: 100 });
    const endedCommit = await h.waitForEnd(commitTx);
    const endedAbort = await h.waitForEnd(abortTx);
    expect(endedCommit.status).toBe('COMMITTED');
    expect(endedAbort.status).toBe('ABORTED');
    await h.waitForQuiet();

    const snapshot = async () => ({
      sku15: await h.demo.shop.getInventory('sku-15'),
      sku16: await h.demo.shop.getInventory('sku-16'),
      acct15: await h.demo.shop.getAccount('acct-15'),
      acct16: await h.demo.shop.getAccount('acct-16'),
      order15: await h.demo.shop.getOrder(committed.orderId),
      order16: await h.demo.shop.getOrder(aborted.orderId),
      ship15: await h.demo.shop.getShipment(committed.orderId),
      ship16: await h.demo.shop.getShipment(aborted.orderId),
      tx1: (await h.request('GET', `/transactions/${commitTx}`)).body,
      tx2: (await h.request('GET', `/transactions/${abortTx}`)).body,
    });
    const before = await snapshot();
    expect(before.sku15).toMatchObject({ held: 0, sold: 4 });
    expect(before.order15).toEqual({ orderId: committed.orderId, status: 'CONFIRMED' });

    // Every message type again, twice: PREPARE, COMMIT and ABORT to the participants, VOTE and
    // ACK to the coordinator, each as the original would have been.
    for (let round = 0; round < 2; round++) {
      for (const p of committed.body.participants) {
        const base = { v: 1, txId: commitTx, participant: p.service, deadlineAt: Date.now() + 10_000, attempt: 2 };
        await h.sendRaw(q[p.service]!, { ...base, type: 'PREPARE', operation: p.operation });
        await h.sendRaw(q[p.service]!, { ...base, type: 'COMMIT' });
        await h.sendRaw(reply[p.service]!, { v: 1, type: 'VOTE', txId: commitTx, participant: p.service, vote: 'YES' });
        await h.sendRaw(reply[p.service]!, { v: 1, type: 'ACK', txId: commitTx, participant: p.service, phase: 'COMMIT' });
      }
      for (const p of aborted.body.participants) {
        const base = { v: 1, txId: abortTx, participant: p.service, deadlineAt: Date.now() + 10_000, attempt: 2 };
        await h.sendRaw(q[p.service]!, { ...base, type: 'PREPARE', operation: p.operation });
        await h.sendRaw(q[p.service]!, { ...base, type: 'ABORT' });
        const vote = endedAbort.participants.find((x) => x.service === p.service)?.vote ?? 'YES';
        await h.sendRaw(reply[p.service]!, { v: 1, type: 'VOTE', txId: abortTx, participant: p.service, vote });
        await h.sendRaw(reply[p.service]!, { v: 1, type: 'ACK', txId: abortTx, participant: p.service, phase: 'ABORT' });
      }
    }
    await h.waitForQuiet();
    expect(await snapshot()).toEqual(before);
  });
});

describe('200 orders in flight at once', () => {
  it('all end, with money and stock conserved and every order atomic', async () => {
    const totalsBefore = await h.demo.shop.demoTotals();
    const skus = Array.from({ length: 8 }, (_, i) => `sku-${20 + i}`);
    const soldBefore = new Map<string, number>();
    for (const s of skus) soldBefore.set(s, (await h.demo.shop.getInventory(s))!.sold);
    const runId = `c200-${Date.now()}`;
    const specs = Array.from({ length: 200 }, (_, i) => ({
      orderId: `conc-${i}`,
      items: [{ sku: skus[i % 8]!, quantity: 1 + (i % 3) }, { sku: skus[(i + 3) % 8]!, quantity: i % 10 === 0 ? 5000 : 1 }],
      account: `acct-${20 + (i % 10)}`,
      amount: 100 + i,
      // silent holds every order open until the test answers for it: all 200 are in flight at once.
      extra: [{ service: 'silent', operation: {} }],
    }));
    const txIds: string[] = [];
    let next = 0;
    // Started 8 at a time, as a careful client does: with an Idempotency-Key, retried on a 5xx (the
    // API, the shop and the test share one process, and the local api function times out at 10 s).
    // A generous prepare timeout, since all of them wait for silent.
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < specs.length) {
          const i = next++;
          for (let attempt = 1; ; attempt++) {
            const res = await h.request('POST', '/transactions', orderBody(specs[i]!, { prepareSeconds: 180, commitSeconds: 30 }).body, { 'Idempotency-Key': `${runId}-${i}` });
            if (res.status === 202) {
              txIds[i] = res.body.txId as string;
              break;
            }
            if (res.status < 500 || attempt >= 5) throw new Error(`POST /transactions answered ${res.status}: ${JSON.stringify(res.body)}`);
          }
        }
      }),
    );
    const log = new TxLog(documentClient(h.stack.dynamodb), h.stack.outputs.txTable);
    // Every order is open, and the shop's four services have voted on each: YES, or NO for 5000 units.
    await vi.waitFor(
      async () => {
        const records = await log.getMany(txIds);
        expect(records).toHaveLength(200);
        const waiting = records.filter((r) => (r.status === 'PREPARING' && r.ok === 4) || (r.status === 'ABORTING' && r.votes.inventory?.vote === 'NO'));
        expect(waiting.length).toBe(200);
      },
      { timeout: 180_000, interval: 500 },
    );

    // silent votes YES on every one, then acknowledges each decision.
    await sendBatched(h, h.stack.outputs.replyQueueUrls.silent!, txIds.map((txId) => ({ v: 1, type: 'VOTE', txId, participant: 'silent', vote: 'YES' })));
    const decided = await vi.waitFor(
      async () => {
        const records = await log.getMany(txIds);
        expect(records.filter((r) => r.status === 'PREPARING')).toEqual([]);
        return records;
      },
      { timeout: 120_000, interval: 500 },
    );
    await sendBatched(h, h.stack.outputs.replyQueueUrls.silent!, decided.map((r) => ({ v: 1, type: 'ACK', txId: r.txId, participant: 'silent', phase: r.decision })));
    const ended = await Promise.all(txIds.map((id) => h.waitForEnd(id, 120_000)));
    await h.waitForQuiet(60_000);

    const committed = ended.map((t, i) => ({ t, spec: specs[i]! })).filter(({ t }) => t.status === 'COMMITTED');
    // The orders for 5000 units cannot commit; the others can, since stock and money suffice.
    expect(committed.length).toBe(180);
    for (const { t, spec } of ended.map((t, i) => ({ t, spec: specs[i]! }))) {
      const order = await h.demo.shop.getOrder(spec.orderId);
      const shipment = await h.demo.shop.getShipment(spec.orderId);
      if (t.status === 'COMMITTED') {
        expect(order?.status).toBe('CONFIRMED');
        expect(shipment?.status).toBe('SCHEDULED');
      } else {
        expect(t.decision?.reason).toMatch(/^inventory voted NO: insufficient stock/);
        expect(order === undefined || order.status === 'CANCELLED').toBe(true);
        expect(shipment).toBeUndefined();
      }
    }
    const totalsAfter = await h.demo.shop.demoTotals();
    expect(totalsAfter.stock).toBe(totalsBefore.stock);
    expect(totalsAfter.money).toBe(totalsBefore.money);
    expect(totalsAfter.openHolds).toBe(0);
    for (const s of skus) {
      const expectedSold = committed.flatMap(({ spec }) => spec.items).filter((it) => it.sku === s).reduce((n, it) => n + it.quantity, 0);
      expect((await h.demo.shop.getInventory(s))!.sold - soldBefore.get(s)!).toBe(expectedSold);
    }
  }, 480_000);
});

/** Messages to one queue, ten per SendMessageBatch. */
async function sendBatched(harness: Harness, QueueUrl: string, bodies: unknown[]): Promise<void> {
  for (let i = 0; i < bodies.length; i += 10) {
    const out = await harness.stack.sqs.send(
      new SendMessageBatchCommand({ QueueUrl, Entries: bodies.slice(i, i + 10).map((b, j) => ({ Id: String(j), MessageBody: JSON.stringify(b) })) }),
    );
    expect(out.Failed ?? []).toEqual([]);
  }
}
