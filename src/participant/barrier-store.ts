// Barrier records in the participant's own table: one item per txId, key `pk` = `barrier#<txId>`.
// Every write is a full Put conditioned on the revision that was read, so a write based on a stale
// read fails and the caller re-reads (dynalite ignores ReturnValuesOnConditionCheckFailure anyway).
// The item's shape and the restart scan's rule live in src/core/barrier-item.ts (shared with the
// in-memory adapter); this module only speaks DynamoDB.
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { ABSENT, type BarrierRecord, type StoredBarrier } from '../core/barrier';
import { BARRIER_KEY_PREFIX, barrierKey, decodeBarrier, encodeBarrier, unsettled } from '../core/barrier-item';
import type { BarrierStorePort, UnsettledBarrier } from '../core/ports';

export { BARRIER_KEY_PREFIX, barrierKey };
export type { UnsettledBarrier };

export class BarrierStore implements BarrierStorePort {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly table: string,
    private readonly participant: string,
  ) {}

  async read(txId: string): Promise<StoredBarrier> {
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk: barrierKey(txId) }, ConsistentRead: true }));
    return out.Item ? decodeBarrier(out.Item, `${barrierKey(txId)} in ${this.table}`) : ABSENT;
  }

  /**
   * Barrier records a crash may have left half done, for the restart scan (see `unsettled` for
   * which). A Scan of the participant's table, so bounded by `maxPages`; the filter below is the
   * part of the rule DynamoDB can apply, `unsettled` the whole of it.
   */
  async scanUnsettled(sinceMs: number, maxPages = 100): Promise<UnsettledBarrier[]> {
    const found: UnsettledBarrier[] = [];
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    for (let page = 0; page < maxPages; page++) {
      const out = await this.doc.send(
        new ScanCommand({
          TableName: this.table,
          ConsistentRead: true,
          FilterExpression:
            'begins_with(pk, :prefix) AND (#state IN (:preparing, :prepared) OR (#state = :aborted AND prepareStarted = :true AND updatedAtMs >= :since))',
          ProjectionExpression: 'pk, txId, #state, #vote, updatedAtMs, prepareStarted',
          ExpressionAttributeNames: { '#state': 'state', '#vote': 'vote' },
          ExpressionAttributeValues: {
            ':prefix': BARRIER_KEY_PREFIX,
            ':preparing': 'PREPARING',
            ':prepared': 'PREPARED',
            ':aborted': 'ABORTED',
            ':true': true,
            ':since': sinceMs,
          },
          ...(ExclusiveStartKey ? { ExclusiveStartKey } : {}),
        }),
      );
      for (const item of out.Items ?? []) {
        const b = unsettled(item, sinceMs);
        if (b) found.push(b);
      }
      ExclusiveStartKey = out.LastEvaluatedKey;
      if (!ExclusiveStartKey) break;
    }
    return found;
  }

  /** Writes `next` if the stored revision is still `expectedRev` (0: no record yet); false if it moved on. */
  async write(txId: string, expectedRev: number, next: BarrierRecord, nowMs: number): Promise<boolean> {
    const item = encodeBarrier(txId, this.participant, expectedRev + 1, next, nowMs);
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: item,
          ...(expectedRev === 0
            ? { ConditionExpression: 'attribute_not_exists(pk)' }
            : { ConditionExpression: '#rev = :rev', ExpressionAttributeNames: { '#rev': 'rev' }, ExpressionAttributeValues: { ':rev': expectedRev } }),
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }
}
