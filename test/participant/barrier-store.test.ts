// The DynamoDB barrier store's transaction path against a scripted client: a transaction that meets
// another in flight is tried again after a backoff; a failed condition is never retried.
import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import type { BarrierRecord } from '../../src/core/barrier';
import { BarrierStore, type TransactWrite } from '../../src/participant/barrier-store';

const cancelled = (...codes: string[]) =>
  new TransactionCanceledException({ message: 'cancelled', $metadata: {}, CancellationReasons: codes.map((Code) => ({ Code })) });

/** A document client that answers each send with the next scripted error, then succeeds. */
function scripted(errors: Error[]) {
  let sends = 0;
  const doc = {
    send: async () => {
      const err = errors[sends++];
      if (err) throw err;
      return {};
    },
  } as unknown as DynamoDBDocumentClient;
  const waits: number[] = [];
  const store = new BarrierStore(doc, 'table', 'tester', async (ms) => void waits.push(ms));
  return { store, waits, sends: () => sends };
}

const prepared: BarrierRecord = { state: 'PREPARED', operation: {}, vote: 'YES' };
const effect: TransactWrite = { ConditionCheck: { TableName: 'table', Key: { pk: 'x' }, ConditionExpression: 'attribute_exists(pk)' } };

describe('BarrierStore transactions', () => {
  it('tries a transaction again, backing off, while it only conflicts with others in flight', async () => {
    const { store, waits, sends } = scripted([cancelled('None', 'TransactionConflict'), cancelled('TransactionConflict', 'None')]);
    expect(await store.write('tx-1', 1, prepared, 0, [effect])).toEqual({ kind: 'written' });
    expect(sends()).toBe(3);
    expect(waits).toHaveLength(2);
    // Capped exponential backoff with jitter: below 80 ms, then below 160 ms.
    waits.forEach((ms, i) => {
      expect(ms).toBeGreaterThanOrEqual(0);
      expect(ms).toBeLessThan(80 * 2 ** i);
    });
  });

  it('gives up after its attempts, and never retries a failed condition', async () => {
    const conflicts = scripted(Array.from({ length: 10 }, () => cancelled('None', 'TransactionConflict')));
    await expect(conflicts.store.write('tx-2', 1, prepared, 0, [effect])).rejects.toBeInstanceOf(TransactionCanceledException);
    expect(conflicts.sends()).toBe(5);
    const moved = scripted([cancelled('ConditionalCheckFailed', 'None')]);
    expect(await moved.store.write('tx-3', 1, prepared, 0, [effect])).toEqual({ kind: 'moved' });
    const rejected = scripted([cancelled('None', 'ConditionalCheckFailed')]);
    expect(await rejected.store.write('tx-4', 1, prepared, 0, [effect])).toMatchObject({ kind: 'rejected', reason: expect.stringContaining('ConditionCheck table') });
    expect([moved.sends(), rejected.sends()]).toEqual([1, 1]);
  });
});
