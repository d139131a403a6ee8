// The API contract on the embedded stack: answers, error bodies naming each bad field, idempotency,
// listing with a cursor, and that a rejected request writes nothing.
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderBody, startHarness, type Harness } from './harness';
import { pause } from '../support/fixtures';

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
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

  it('answers 413 for a body over 256 KiB', async () => {
    const before = await logItemCount();
    const big = { participants: [{ service: 'order', operation: { blob: 'x'.repeat(300 * 1024) } }] };
    const res = await h.request('POST', '/transactions', big);
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('PayloadTooLarge');
    expect(await logItemCount()).toBe(before);
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
