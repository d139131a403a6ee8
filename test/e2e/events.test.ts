// Decision events end to end on the embedded stack: the functions' real EventBridge client publishes
// through AWS_ENDPOINT_URL_EVENTBRIDGE to the local PutEvents endpoint, on the bus the CDK app names
// (`dtc-events`), and the meter counts each accepted entry (the benchmark's `eventsPublished`).
// `silent` is a participant with queues and no consumer: the test votes and acknowledges for it, and
// holding its acknowledgement back for three commit timeouts makes supervision mark it in doubt.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { PublishedEvent } from '../../src/local/events';
import { orderBody, startHarness, type Harness } from './harness';

let h: Harness;
const seen: PublishedEvent[] = [];

beforeAll(async () => {
  // finishEvents: Transaction Finished too (off by default; test/unit/decision-events.test.ts checks that).
  h = await startHarness({ context: { participants: ['inventory', 'payment', 'shipping', 'order', 'silent'], finishEvents: true } });
  h.stack.events.subscribe((e) => seen.push(e));
});

afterAll(async () => {
  await h?.stop();
});

const of = (txId: string, type: string) => seen.filter((e) => e['detail-type'] === type && (e.detail as { txId?: string }).txId === txId);
/** Waits until exactly one event of `type` for `txId` has arrived, and answers it. */
const one = (txId: string, type: string, timeout: number, interval: number): Promise<PublishedEvent> =>
  vi.waitFor(
    () => {
      const found = of(txId, type);
      expect(found).toHaveLength(1);
      return found[0]!;
    },
    { timeout, interval },
  );

describe('decision events', () => {
  it('Transaction Decided, Participant In Doubt and Transaction Finished arrive on the stack\'s bus, once each, and are metered', async () => {
    const before = h.stack.meter.reading().eventsPublished;
    const { body } = orderBody({ items: [{ sku: 'sku-40', quantity: 1 }], account: 'acct-40', amount: 300, extra: [{ service: 'silent', operation: {} }] }, { prepareSeconds: 60, commitSeconds: 1 });
    const started = await h.request('POST', '/transactions', body);
    expect(started.status).toBe(202);
    const txId = started.body.txId as string;
    const silentReplies = h.stack.outputs.replyQueueUrls.silent!;

    await h.sendRaw(silentReplies, { v: 1, type: 'VOTE', txId, participant: 'silent', vote: 'YES' });
    const decided = await one(txId, 'Transaction Decided', 30_000, 100);
    expect(decided).toMatchObject({
      source: 'dtc',
      bus: 'dtc-events',
      detail: { v: 1, txId, outcome: 'COMMIT', reason: 'every participant voted YES', participants: ['inventory', 'payment', 'shipping', 'order', 'silent'] },
    });
    // The envelope's time is the decision's, to the second (EventBridge's precision).
    expect(decided.time).toBe((decided.detail as { decidedAt: string }).decidedAt.replace(/\.\d+Z$/, 'Z'));

    // The shop acknowledges; silent does not, and is marked in doubt after three commit timeouts.
    const inDoubt = await one(txId, 'Participant In Doubt', 60_000, 200);
    expect(inDoubt).toMatchObject({ source: 'dtc', bus: 'dtc-events', detail: { v: 1, txId, participant: 'silent', outcome: 'COMMIT', since: expect.any(String) } });
    expect(of(txId, 'Transaction Finished')).toEqual([]);

    await h.sendRaw(silentReplies, { v: 1, type: 'ACK', txId, participant: 'silent', phase: 'COMMIT' });
    const tx = await h.waitForEnd(txId, 30_000);
    expect(tx.status).toBe('COMMITTED');
    const finished = await one(txId, 'Transaction Finished', 30_000, 100);
    expect(finished).toMatchObject({ source: 'dtc', bus: 'dtc-events', detail: { v: 1, txId, outcome: 'COMMIT', finishedAt: tx.finishedAt } });

    // A duplicate acknowledgement re-drives nothing and publishes nothing.
    await h.sendRaw(silentReplies, { v: 1, type: 'ACK', txId, participant: 'silent', phase: 'COMMIT' });
    await h.waitForQuiet(30_000);
    expect(seen.filter((e) => (e.detail as { txId?: string }).txId === txId).map((e) => e['detail-type'])).toEqual(['Transaction Decided', 'Participant In Doubt', 'Transaction Finished']);
    // Every event this test saw was metered (other transactions' included: the meter counts all).
    expect(h.stack.meter.reading().eventsPublished - before).toBe(seen.length);
  }, 120_000);
});
