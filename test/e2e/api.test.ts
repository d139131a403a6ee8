// The API contract on the embedded stack: answers, error bodies naming each bad field, idempotency,
// listing with a cursor, that a rejected request writes nothing, waiting for the outcome
// (`Prefer: wait`, `?wait`), the abort route in each of its answers, and the participants' decision route.
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderBody, startHarness, type Harness } from './harness';
import { pause } from '../support/fixtures';

let h: Harness;

beforeAll(async () => {
  // `silent` has queues and no consumer: a transaction it belongs to stays undecided until the test speaks for it.
  h = await startHarness({ context: { participants: ['inventory', 'payment', 'shipping', 'order', 'silent'] } });
});

afterAll(async () => {
  await h?.stop();
});

async function logItemCount(): Promise<number> {
  const out = await h.stack.dynamodb.send(new ScanCommand({ TableName: h.stack.outputs.txTable, Select: 'COUNT', ConsistentRead: true }));
  return out.Count ?? 0;
}

describe('POST /transactions rejects bad input with a clear error and writes nothing', () => {
  it.each([
    ['malformed JSON', '{"participants": [', 400, '(body)'],
    ['a body that is not an object', '[1,2]', 400, '(body)'],
    ['no participants', { participants: [] }, 400, 'participants'],
    ['an unknown service', { participants: [{ service: 'ghost', operation: {} }] }, 400, 'participants.0.service'],
    ['a zero prepare timeout', { participants: [{ service: 'order' }], timeouts: { prepareSeconds: 0 } }, 400, 'timeouts.prepareSeconds'],
    ['a negative commit timeout', { participants: [{ service: 'order' }], timeouts: { commitSeconds: -1 } }, 400, 'timeouts.commitSeconds'],
    ['an absurd timeout', { participants: [{ service: 'order' }], timeouts: { prepareSeconds: 10_000_000 } }, 400, 'timeouts.prepareSeconds'],
    ['an unknown field', { participants: [{ service: 'order' }], priority: 'high' }, 400, '(body)'],
  ])('%s', async (_name, body, status, field) => {
    const before = await logItemCount();
    const res = await h.request('POST', '/transactions', body);
    expect(res.status).toBe(status);
    expect(res.body.error.fields.map((f: { field: string }) => f.field)).toContain(field);
    expect(await logItemCount()).toBe(before);
  });

  it('names every bad field at once', async () => {
    const res = await h.request('POST', '/transactions', {
      participants: [{ service: 'ghost' }, { service: 'Bad!' }],
      timeouts: { prepareSeconds: 0, commitSeconds: 1.5 },
    });
    expect(res.status).toBe(400);
    const fields = res.body.error.fields.map((f: { field: string }) => f.field);
    expect(fields).toEqual(expect.arrayContaining(['participants.1.service', 'timeouts.prepareSeconds', 'timeouts.commitSeconds']));
  });

  it('names an operation nested deeper than 64 levels (a body thousands deep overflowed the stack: a 500)', async () => {
    const before = await logItemCount();
    const deep = `{"participants":[{"service":"order","operation":${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}}]}`;
    const res = await h.request('POST', '/transactions', deep);
    expect(res.status).toBe(400);
    expect(res.body.error.fields).toEqual([{ field: 'participants.0.operation', message: 'is nested deeper than 64 levels' }]);
    expect(await logItemCount()).toBe(before);
  });

  it('answers 413 for a body over 256 KiB', async () => {
    const before = await logItemCount();
    const big = { participants: [{ service: 'order', operation: { blob: 'x'.repeat(300 * 1024) } }] };
    const res = await h.request('POST', '/transactions', big);
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('PayloadTooLarge');
    expect(await logItemCount()).toBe(before);
  });
});

describe('any body the API accepts can be stored and sent', () => {
  it('an operation holding characters SQS refuses in a message body (U+FFFE, U+FFFF) reaches its participant unchanged', async () => {
    const note = 'gift \uffff wrap \ufffe';
    const res = await h.request('POST', '/transactions', { participants: [{ service: 'payment', operation: { account: 'acct-35', amount: 7, note } }] }, { Prefer: 'wait=10' });
    expect(res.status).toBe(200);
    expect(res.body.decision.outcome).toBe('COMMIT');
    const log = new TxLog(documentClient(h.stack.dynamodb), h.stack.outputs.txTable);
    expect(JSON.parse((await log.getOps(res.body.txId))!.participants)).toEqual([{ service: 'payment', operation: { account: 'acct-35', amount: 7, note } }]);
    expect((await h.waitForEnd(res.body.txId)).status).toBe('COMMITTED');
  });
});

describe('GET /transactions/{id}', () => {
  it('answers 404 for an unknown id', async () => {
    const res = await h.request('GET', '/transactions/00000000-0000-0000-0000-000000000000');
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('NotFound');
  });
});

describe('Idempotency-Key', () => {
  it('returns the same transaction for the same key and body, and 422 for another body', async () => {
    const key = `key-${Date.now()}`;
    const { body } = orderBody({ items: [{ sku: 'sku-30', quantity: 1 }], account: 'acct-30', amount: 10 });
    const first = await h.request('POST', '/transactions', body, { 'Idempotency-Key': key });
    expect(first.status).toBe(202);
    const again = await h.request('POST', '/transactions', body, { 'Idempotency-Key': key });
    expect(again.status).toBe(202);
    expect(again.body.txId).toBe(first.body.txId);

    const other = orderBody({ items: [{ sku: 'sku-30', quantity: 2 }], account: 'acct-30', amount: 10 });
    const conflict = await h.request('POST', '/transactions', other.body, { 'Idempotency-Key': key });
    expect(conflict.status).toBe(422);
    expect(conflict.body.error.code).toBe('IdempotencyKeyReused');

    const tx = await h.waitForEnd(first.body.txId);
    expect(tx.status).toBe('COMMITTED');
    // One commit only: the replay did not start a second transaction.
    expect(await h.demo.shop.getInventory('sku-30')).toMatchObject({ sold: 1, held: 0 });
    const afterEnd = await h.request('POST', '/transactions', body, { 'Idempotency-Key': key });
    expect(afterEnd.status).toBe(202);
    expect(afterEnd.body).toMatchObject({ txId: first.body.txId, status: 'COMMITTED' });
  });

  it('rejects a key that is not 1-128 visible characters', async () => {
    const res = await h.request('POST', '/transactions', { participants: [{ service: 'order' }] }, { 'Idempotency-Key': 'x'.repeat(200) });
    expect(res.status).toBe(400);
    expect(res.body.error.fields[0].field).toBe('Idempotency-Key');
  });
});

describe('GET /transactions', () => {
  it('lists the most recent first, page by page with a cursor', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(await h.startOrder({ items: [{ sku: 'sku-31', quantity: 1 }], account: 'acct-31', amount: 1 }));
      await pause(5); // distinct createdAt milliseconds
    }
    await Promise.all(ids.map((id) => h.waitForEnd(id)));
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 20; page++) {
      const res = await h.request('GET', `/transactions?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      expect(res.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.items.map((i: { txId: string }) => i.txId));
      cursor = res.body.nextCursor;
      if (!cursor) break;
    }
    const newestFirst = [...ids].reverse();
    expect(seen.filter((id) => ids.includes(id))).toEqual(newestFirst);
  });

  it('rejects a bad limit and a bad cursor', async () => {
    expect((await h.request('GET', '/transactions?limit=0')).status).toBe(400);
    expect((await h.request('GET', '/transactions?limit=abc')).status).toBe(400);
    const bad = await h.request('GET', '/transactions?cursor=not-a-cursor');
    expect(bad.status).toBe(400);
    expect(bad.body.error.fields[0].field).toBe('cursor');
  });
});

let silentOrders = 0;
/** A transaction of the shop's order service (which votes YES) and silent (which does not answer). */
const silentTx = async (timeouts = { prepareSeconds: 30, commitSeconds: 30 }): Promise<string> => {
  const orderId = `w-${Date.now()}-${++silentOrders}`;
  const res = await h.request('POST', '/transactions', { participants: [{ service: 'order', operation: { orderId, items: [{ sku: 'sku-34', quantity: 1 }], total: 10 } }, { service: 'silent' }], timeouts });
  expect(res.status).toBe(202);
  return res.body.txId as string;
};

describe('Prefer: wait', () => {
  it('answers 200 with the decided transaction', async () => {
    const { body } = orderBody({ items: [{ sku: 'sku-32', quantity: 1 }], account: 'acct-32', amount: 10 });
    const res = await h.request('POST', '/transactions', body, { Prefer: 'wait=10' });
    expect(res.status).toBe(200);
    expect(res.headers['preference-applied']).toBe('wait=10');
    expect(res.headers.location).toBe(`/transactions/${res.body.txId}`);
    expect(res.body).toMatchObject({ txId: expect.any(String), decision: { outcome: 'COMMIT' }, links: { self: `/transactions/${res.body.txId}` } });
    expect(['COMMITTING', 'COMMITTED']).toContain(res.body.status);
    expect(res.body.participants.map((p: { service: string; vote: string }) => [p.service, p.vote])).toEqual([
      ['inventory', 'YES'],
      ['payment', 'YES'],
      ['shipping', 'YES'],
      ['order', 'YES'],
    ]);
  });

  it('answers 202 as without it when N runs out first, and honours only a wait it understands', async () => {
    const t0 = Date.now();
    const res = await h.request('POST', '/transactions', { participants: [{ service: 'silent' }], timeouts: { prepareSeconds: 30 } }, { Prefer: 'wait=1' });
    expect(res.status).toBe(202);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(res.body).toEqual({ txId: expect.any(String), status: 'PREPARING', links: { self: `/transactions/${res.body.txId}` } });
    expect(res.headers['preference-applied']).toBeUndefined();
    // Another preference alone is not a wait: 202 at once.
    const other = await h.request('POST', '/transactions', { participants: [{ service: 'silent' }] }, { Prefer: 'respond-async' });
    expect(other.status).toBe(202);
  });

  it.each(['wait=abc', 'wait=-1', 'wait=1.5', 'wait=', 'respond-async, wait=1e3'])('rejects Prefer: %s with 400 naming the header, writing nothing', async (prefer) => {
    const before = await logItemCount();
    const res = await h.request('POST', '/transactions', { participants: [{ service: 'order' }] }, { Prefer: prefer });
    expect(res.status).toBe(400);
    expect(res.body.error.fields).toEqual([{ field: 'Prefer', message: 'Prefer: wait must be a whole number of seconds' }]);
    expect(await logItemCount()).toBe(before);
  });
});

describe('GET /transactions/{id}?wait=N', () => {
  it('answers once decided, or with the transaction as it is when N runs out; a bad wait is 400', async () => {
    const txId = await silentTx();
    const t0 = Date.now();
    const open = await h.request('GET', `/transactions/${txId}?wait=1`);
    expect(open).toMatchObject({ status: 200, body: { txId, status: 'PREPARING' } });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(open.body.decision).toBeUndefined();

    const waiting = h.request('GET', `/transactions/${txId}?wait=10`);
    await h.sendRaw(h.stack.outputs.replyQueueUrls.silent!, { v: 1, type: 'VOTE', txId, participant: 'silent', vote: 'NO', reason: 'test' });
    const decided = await waiting;
    expect(decided).toMatchObject({ status: 200, body: { txId, decision: { outcome: 'ABORT', reason: 'silent voted NO: test' } } });

    for (const bad of ['abc', '-1', '1.5', '']) {
      const res = await h.request('GET', `/transactions/${txId}?wait=${bad}`);
      expect(res.status, `wait=${bad}`).toBe(400);
      expect(res.body.error.fields).toEqual([{ field: 'wait', message: 'must be a whole number of seconds' }]);
    }
    expect((await h.request('GET', '/transactions/00000000-0000-0000-0000-000000000001?wait=1')).status).toBe(404);
  });
});

describe('POST /transactions/{id}/abort', () => {
  it('202 when it decides the abort now, 202 again when it was already aborted, with the transaction', async () => {
    const txId = await silentTx();
    const first = await h.request('POST', `/transactions/${txId}/abort`, { reason: 'the customer cancelled' });
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ decidedNow: true, transaction: { txId, status: 'ABORTING', decision: { outcome: 'ABORT', reason: 'aborted on request: the customer cancelled' } } });
    const again = await h.request('POST', `/transactions/${txId}/abort`);
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ decidedNow: false, transaction: { txId, decision: { outcome: 'ABORT', reason: 'aborted on request: the customer cancelled' } } });
    // order voted (or will vote) and acknowledges the abort; silent never voted, so it is told too.
    await h.sendRaw(h.stack.outputs.replyQueueUrls.silent!, { v: 1, type: 'ACK', txId, participant: 'silent', phase: 'ABORT' });
    expect((await h.waitForEnd(txId)).status).toBe('ABORTED');
    expect((await h.request('POST', `/transactions/${txId}/abort`)).body).toMatchObject({ decidedNow: false, transaction: { status: 'ABORTED' } });
  });

  it('409 with the decision for a committed transaction, and for one with every YES in', async () => {
    const { body } = orderBody({ items: [{ sku: 'sku-33', quantity: 1 }], account: 'acct-33', amount: 10 });
    const committed = await h.request('POST', '/transactions', body, { Prefer: 'wait=10' });
    expect(committed.body.decision.outcome).toBe('COMMIT');
    const res = await h.request('POST', `/transactions/${committed.body.txId}/abort`);
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ error: { code: 'AlreadyCommitted', message: `transaction ${committed.body.txId} committed` }, decision: 'COMMIT', transaction: { txId: committed.body.txId } });
    expect((await h.waitForEnd(committed.body.txId)).status).toBe('COMMITTED');
    expect(await h.demo.shop.getInventory('sku-33')).toMatchObject({ held: 0, sold: 1 });
    // Every YES in (the decider having crashed) is in test/e2e/authority.test.ts.
  });

  it('404 for an unknown id, 400 for a malformed id or body, and none of them writes anything', async () => {
    const before = await logItemCount();
    const unknown = await h.request('POST', '/transactions/00000000-0000-0000-0000-000000000002/abort');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('NotFound');
    for (const id of ['short', 'not_an_id!', encodeURIComponent('a'.repeat(65))]) {
      const res = await h.request('POST', `/transactions/${id}/abort`);
      expect(res.status, id).toBe(400);
      expect(res.body.error.fields[0].field).toBe('id');
    }
    const txId = await silentTx();
    const afterStart = await logItemCount();
    expect((await h.request('POST', `/transactions/${txId}/abort`, '{"reason":')).status).toBe(400);
    expect((await h.request('POST', `/transactions/${txId}/abort`, { reason: 42 })).status).toBe(400);
    expect((await h.request('POST', `/transactions/${txId}/abort`, { reason: 'x'.repeat(201) })).status).toBe(400);
    expect((await h.request('POST', `/transactions/${txId}/abort`, [1])).status).toBe(400);
    expect(await logItemCount()).toBe(afterStart);
    expect(afterStart).toBeGreaterThan(before);
    expect((await h.request('GET', `/transactions/${txId}`)).body.status).toBe('PREPARING');
    await h.request('POST', `/transactions/${txId}/abort`);
    await h.sendRaw(h.stack.outputs.replyQueueUrls.silent!, { v: 1, type: 'ACK', txId, participant: 'silent', phase: 'ABORT' });
    expect((await h.waitForEnd(txId)).status).toBe('ABORTED');
  });
});

describe('GET /transactions/{id}/decision', () => {
  it('shows only the outcome: no operations, no votes, no other participants', async () => {
    const txId = await silentTx();
    const pending = await h.request('GET', `/transactions/${txId}/decision`);
    expect(pending.status).toBe(200);
    expect(pending.body).toEqual({ txId, status: 'PREPARING', createdAt: expect.any(String), decision: 'PENDING' });
    await h.request('POST', `/transactions/${txId}/abort`);
    expect((await h.request('GET', `/transactions/${txId}/decision`)).body).toEqual({ txId, status: 'ABORTING', createdAt: pending.body.createdAt, decision: 'ABORT' });
    await h.sendRaw(h.stack.outputs.replyQueueUrls.silent!, { v: 1, type: 'ACK', txId, participant: 'silent', phase: 'ABORT' });
    await h.waitForEnd(txId);
    expect((await h.request('GET', `/transactions/${txId}/decision`)).body).toMatchObject({ status: 'ABORTED', decision: 'ABORT' });
    const unknown = await h.request('GET', '/transactions/00000000-0000-0000-0000-000000000003/decision');
    expect(unknown).toMatchObject({ status: 404, body: { error: { code: 'NotFound', message: 'no transaction 00000000-0000-0000-0000-000000000003' } } });
  });
});
