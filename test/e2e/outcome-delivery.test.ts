// Issue 11 on the embedded stack: a participant whose ABORT is dead-lettered still learns the outcome
// (supervision keeps re-sending until it acknowledges), an operator's recorded release of a
// participant retired for good (POST /transactions/{id}/release), a READ_ONLY voter told the outcome
// and waited for, and the idempotency window: a replay after the transaction was forgotten is a 410.
import { DeleteItemCommand, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idempotencyPk } from '../../src/core/log-transitions';
import type { TxView } from '../../src/core/transaction';
import type { Participant } from '../../src/participant/define';
import { startDemo, type RunningDemo } from '../../src/local/demo-routes';
import type { LocalStack } from '../../src/local/stack';
import { startLocalAws } from '../support/aws';
import { orderBody } from './harness';

let stack: LocalStack;
let demo: RunningDemo;
/** Accounts whose ABORT payment's handler fails on (until the test clears it). */
const failingAborts = new Set<string>();
let failedAborts = 0;

beforeAll(async () => {
  // `silent` has queues and no consumer: the test speaks for it.
  ({ stack } = await startLocalAws({ app: true, context: { participants: ['inventory', 'payment', 'shipping', 'order', 'silent'] } }));
  const wrap = (participant: Participant): Participant =>
    participant.service !== 'payment'
      ? participant
      : {
          ...participant,
          async abort(input) {
            if (failingAborts.has((input.operation as { account?: string }).account ?? '')) {
              failedAborts++;
              throw new Error('payment abort handler failing (test)');
            }
            return participant.abort(input);
          },
        };
  demo = await startDemo(stack, {
    wrapParticipant: wrap,
    // A failing message comes back after 1 s, so its 5 receives (then the DLQ) take seconds.
    visibilityTimeoutSeconds: 1,
    // The inquiry would rescue the participant on its own: here only supervision's re-sends may.
    inquireAfterMs: 3_600_000,
  });
}, 120_000);

afterAll(async () => {
  await demo?.stop();
  await stack?.stop();
});

async function request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.outputs.apiUrl}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const view = async (txId: string): Promise<TxView> => (await request('GET', `/transactions/${txId}`)).body as TxView;
const ended = (txId: string, timeout: number) =>
  expect.poll(async () => (await view(txId)).status, { timeout, interval: 200 }).toMatch(/^(COMMITTED|ABORTED)$/);

describe('a participant whose ABORT is dead-lettered', () => {
  it('still learns the outcome: the abort phase stays open, is marked in doubt, and supervision re-sends until the hold is released', async () => {
    const { body } = orderBody({ items: [{ sku: 'sku-41', quantity: 99_999 }], account: 'acct-41', amount: 900 }, { prepareSeconds: 10, commitSeconds: 1 });
    const before = await demo.shop.getAccount('acct-41');
    failingAborts.add('acct-41');
    const started = await request('POST', '/transactions', body);
    expect(started.status).toBe(202);
    const txId = started.body.txId as string;
    // inventory votes NO; payment held the money (its YES recorded, or refused after the decision:
    // either way it is awaited).
    await expect.poll(async () => (await view(txId)).decision?.outcome, { timeout: 15_000, interval: 100 }).toBe('ABORT');
    // payment's ABORT fails until the consumer dead-letters it (5 receives), while the transaction
    // stays open: marked in doubt after 3 commit timeouts, payment still owing its acknowledgement.
    const dlq = stack.outputs.participantQueues.payment!.replace(/-requests$/, '-requests-dlq');
    let deadLettered = false;
    await expect
      .poll(
        async () => {
          const out = await stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: dlq, MaxNumberOfMessages: 10, MessageAttributeNames: ['All'], VisibilityTimeout: 0 }));
          deadLettered ||= (out.Messages ?? []).some((m) => m.Body?.includes(txId) && m.MessageAttributes?.['dtc-receive-count'] !== undefined);
          return deadLettered;
        },
        { timeout: 30_000, interval: 250 },
      )
      .toBe(true);
    expect(failedAborts).toBeGreaterThanOrEqual(5);
    const open = await view(txId);
    expect(open).toMatchObject({ status: 'ABORTING' });
    expect(open.participants.find((p) => p.service === 'payment')?.ack).toBeUndefined();
    await expect.poll(async () => (await view(txId)).inDoubt, { timeout: 15_000, interval: 200 }).toContain('payment');
    expect((await demo.shop.getAccount('acct-41'))!.held).toBeGreaterThan(before!.held);
    // The handler is fixed: the next re-send (the message the consumer dead-lettered is gone) releases the hold.
    failingAborts.delete('acct-41');
    await ended(txId, 60_000);
    const after = await view(txId);
    expect(after.status).toBe('ABORTED');
    expect(after.participants.find((p) => p.service === 'payment')?.ack).toBe('ABORT');
    expect(await demo.shop.getAccount('acct-41')).toMatchObject({ held: before!.held, balance: before!.balance });
  }, 120_000);
});

describe('POST /transactions/{id}/release', () => {
  it('releases a participant retired for good from the wait, recorded; refuses what it must', async () => {
    const { body } = orderBody({ items: [{ sku: 'sku-42', quantity: 99_999 }], account: 'acct-42', amount: 100, extra: [{ service: 'silent', operation: {} }] }, { prepareSeconds: 30, commitSeconds: 30 });
    const started = await request('POST', '/transactions', body);
    const txId = started.body.txId as string;
    const release = (b: unknown, id = txId) => request('POST', `/transactions/${id}/release`, b);
    const good = { participant: 'silent', operator: 'ops-anna', reason: 'silent-v1 is retired for good' };

    // Before the decision: 409.
    const early = await view(txId);
    if (early.status === 'PREPARING') expect((await release(good)).status).toBe(409);
    await expect.poll(async () => (await view(txId)).decision?.outcome, { timeout: 15_000, interval: 100 }).toBe('ABORT');
    // The four shop services acknowledge; silent never voted, so it may have prepared: awaited.
    await expect.poll(async () => (await view(txId)).participants.filter((p) => p.ack === 'ABORT').length, { timeout: 15_000, interval: 100 }).toBe(3);
    expect((await view(txId)).status).toBe('ABORTING');

    expect((await release('{not json')).status).toBe(400);
    const missing = await release({ participant: 'silent', operator: 'ops-anna' });
    expect(missing.status).toBe(400);
    expect(missing.body.error.fields.map((f: { field: string }) => f.field)).toEqual(['reason']);
    expect((await release({ ...good, participant: 'ghost' })).body.error.fields[0].field).toBe('participant');
    expect((await release(good, '00000000-0000-4000-8000-000000000000')).status).toBe(404);
    // inventory voted NO (never prepared) and payment acknowledged: neither is awaited.
    expect(await release({ ...good, participant: 'inventory' })).toMatchObject({ status: 409, body: { error: { code: 'NotAwaited' } } });
    expect((await release({ ...good, participant: 'payment' })).status).toBe(409);

    const released = await release(good);
    expect(released.status).toBe(200);
    expect(released.body).toMatchObject({ txId, status: 'ABORTED', releases: [{ participant: 'silent', operator: 'ops-anna', reason: 'silent-v1 is retired for good' }] });
    expect(Date.parse(released.body.releases[0].at)).toBeGreaterThan(0);
    expect((await view(txId)).releases).toEqual(released.body.releases);
    // Once: a second release is refused, and the record keeps the first.
    expect((await release({ ...good, operator: 'someone-else' })).status).toBe(409);
  }, 60_000);
});

describe('a READ_ONLY voter', () => {
  it('is sent the outcome after the decision, and the transaction finishes only after its acknowledgement', async () => {
    const body = { participants: [{ service: 'order', operation: { orderId: `ro-${Date.now()}`, items: [{ sku: 'sku-43', quantity: 1 }], total: 5 } }, { service: 'silent', operation: {} }], timeouts: { prepareSeconds: 20, commitSeconds: 30 } };
    const started = await request('POST', '/transactions', body);
    const txId = started.body.txId as string;
    await stack.sqs.send(new SendMessageCommand({ QueueUrl: stack.outputs.replyQueueUrls.silent!, MessageBody: JSON.stringify({ v: 1, type: 'VOTE', txId, participant: 'silent', vote: 'READ_ONLY' }) }));
    await expect.poll(async () => (await view(txId)).decision?.outcome, { timeout: 15_000, interval: 100 }).toBe('COMMIT');
    // COMMIT reaches silent's request queue (it holds read locks until told).
    const seen: string[] = [];
    await expect
      .poll(
        async () => {
          const out = await stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: stack.outputs.participantQueues.silent!, MaxNumberOfMessages: 10 }));
          for (const m of out.Messages ?? []) seen.push(JSON.parse(m.Body!).type + ':' + JSON.parse(m.Body!).txId);
          return seen;
        },
        { timeout: 15_000, interval: 200 },
      )
      .toContain(`COMMIT:${txId}`);
    await expect.poll(async () => (await view(txId)).participants.find((p) => p.service === 'order')?.ack, { timeout: 15_000, interval: 100 }).toBe('COMMIT');
    expect((await view(txId)).status).toBe('COMMITTING');
    await stack.sqs.send(new SendMessageCommand({ QueueUrl: stack.outputs.replyQueueUrls.silent!, MessageBody: JSON.stringify({ v: 1, type: 'ACK', txId, participant: 'silent', phase: 'COMMIT' }) }));
    await ended(txId, 15_000);
    expect(await view(txId)).toMatchObject({ status: 'COMMITTED', participants: [{ service: 'order', vote: 'YES', ack: 'COMMIT' }, { service: 'silent', vote: 'READ_ONLY', ack: 'COMMIT' }] });
  }, 60_000);
});

describe('the idempotency window', () => {
  it('costs one write unit more per transaction with a key than before (its finish), two over one without', async () => {
    // Units charged to this transaction's own items only (its record, and its key's item): the table
    // total also takes group claims and the work of earlier tests still settling, which made this flaky.
    stack.meter.countKeys = true;
    const unitsOf = (pk: string) => stack.meter.reading().dynamodb.find((r) => r.table === stack.outputs.txTable && r.index === '' && r.key === pk)?.writeUnits ?? 0;
    const body = { participants: [{ service: 'payment', operation: { account: 'acct-45', amount: 1 } }] };
    const commitOne = async (key?: string) => {
      const res = await request('POST', '/transactions', body, key ? { 'Idempotency-Key': key } : {});
      const txId = res.body.txId as string;
      await ended(txId, 15_000);
      return unitsOf(txId) + (key ? unitsOf(idempotencyPk(key)) : 0);
    };
    const without = await commitOne();
    const withKey = await commitOne(`units-${Date.now()}`);
    console.log(`[measured] log table write units, one-participant commit: ${without} without an Idempotency-Key, ${withKey} with one`);
    expect(without).toBeGreaterThan(0);
    // The key's claim (a put) and its finish (a conditional update of a small item).
    expect(withKey - without).toBe(2);
  }, 60_000);

  it('answers a replay after the transaction was forgotten (record gone, key kept) with 410 and its txId, writing nothing', async () => {
    const table = stack.outputs.txTable;
    const key = `window-${Date.now()}`;
    const body = { participants: [{ service: 'payment', operation: { account: 'acct-44', amount: 5 } }] };
    const first = await request('POST', '/transactions', body, { 'Idempotency-Key': key });
    expect(first.status).toBe(202);
    const txId = first.body.txId as string;
    await ended(txId, 15_000);
    const item = async (pk: string) => (await stack.dynamodb.send(new GetItemCommand({ TableName: table, Key: { pk: { S: pk } }, ConsistentRead: true }))).Item;
    const record = (await item(txId))!;
    const claim = (await item(`idem#${key}`))!;
    // The key is kept past the record, and says its transaction finished.
    expect(Number(claim.expiresAt!.N)).toBeGreaterThan(Number(record.expiresAt!.N));
    expect(claim.finishedAt?.S).toBeDefined();
    // While the record is kept: the same transaction.
    expect(await request('POST', '/transactions', body, { 'Idempotency-Key': key })).toMatchObject({ status: 202, body: { txId } });
    // As TTL would: the record and its operations go, the key stays.
    await stack.dynamodb.send(new DeleteItemCommand({ TableName: table, Key: { pk: { S: txId } } }));
    await stack.dynamodb.send(new DeleteItemCommand({ TableName: table, Key: { pk: { S: `${txId}#ops` } } }));
    const gone = await request('POST', '/transactions', body, { 'Idempotency-Key': key });
    expect(gone).toMatchObject({ status: 410, body: { txId, error: { code: 'IdempotencyKeyExpired' } } });
    expect(await item(txId)).toBeUndefined();
    expect(await item(`${txId}#ops`)).toBeUndefined();
    expect((await request('GET', `/transactions/${txId}`)).status).toBe(404);
  }, 60_000);
});
