// Barrier records in the participant's own table: one item per txId, key `pk` = `barrier#<txId>`.
// Every write is a full Put conditioned on the revision that was read, so a write based on a stale
// read fails and the caller re-reads. A write that carries the user's effect is one
// TransactWriteItems: the barrier Put (its condition is the check that this run still owns what it
// read) and the effect's actions, all or nothing. The item's shape and the restart scan's rule live
// in src/core/barrier-item.ts (shared with the in-memory adapter); this module only speaks DynamoDB.
import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand, ScanCommand, TransactWriteCommand, type TransactWriteCommandInput } from '@aws-sdk/lib-dynamodb';
import { systemRandom, systemSleep } from '../aws/system';
import { ABSENT, type BarrierRecord, type BarrierWriteResult, type StoredBarrier } from '../core/barrier';
import { AWAITING_PHASE_TWO, BARRIER_KEY_PREFIX, barrierKey, decodeBarrier, encodeBarrier, unsettled } from '../core/barrier-item';
import type { BarrierStorePort, Sleep, UnsettledBarrier } from '../core/ports';
import { backoffMs } from '../core/recovery';

export { BARRIER_KEY_PREFIX, barrierKey };
export type { UnsettledBarrier };

/** One action of a DynamoDB effect: `{ Put }`, `{ Update }`, `{ Delete }` or `{ ConditionCheck }`, as TransactWriteCommand takes it. */
export type TransactWrite = NonNullable<TransactWriteCommandInput['TransactItems']>[number];

/** TransactWriteItems takes at most 100 actions; the barrier's own Put is one of them. */
export const MAX_EFFECT_WRITES = 99;
/** A transaction that meets another in flight on one of its items is tried again, this many times in all. */
const CONFLICT_ATTEMPTS = 5;

// The restart scan's rule (core/barrier-item's `unsettled`) in DynamoDB's terms, its votes taken
// from the same list, so that only the undecided items come back.
const votes = AWAITING_PHASE_TWO.map((v, i) => [`:vote${i}`, v] as const);
const UNSETTLED_SCAN = {
  FilterExpression: `begins_with(pk, :prefix) AND (#state = :preparing OR (#state = :prepared AND #vote IN (${votes.map(([name]) => name).join(', ')})))`,
  ProjectionExpression: 'pk, txId, #state, #vote, updatedAtMs',
  ExpressionAttributeNames: { '#state': 'state', '#vote': 'vote' },
  ExpressionAttributeValues: { ':prefix': BARRIER_KEY_PREFIX, ':preparing': 'PREPARING', ':prepared': 'PREPARED', ...Object.fromEntries(votes) },
};

export class BarrierStore implements BarrierStorePort<TransactWrite> {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly table: string,
    private readonly participant: string,
    private readonly sleep: Sleep = systemSleep,
  ) {}

  async read(txId: string): Promise<StoredBarrier> {
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk: barrierKey(txId) }, ConsistentRead: true }));
    return out.Item ? decodeBarrier(out.Item, `${barrierKey(txId)} in ${this.table}`) : ABSENT;
  }

  /**
   * The undecided barrier records (see `unsettled`), for the restart scan. A Scan of the
   * participant's table, so bounded by `maxPages`.
   */
  async scanUnsettled(maxPages = 100): Promise<UnsettledBarrier[]> {
    const found: UnsettledBarrier[] = [];
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    for (let page = 0; page < maxPages; page++) {
      const out = await this.doc.send(
        new ScanCommand({
          TableName: this.table,
          ConsistentRead: true,
          ...UNSETTLED_SCAN,
          ...(ExclusiveStartKey ? { ExclusiveStartKey } : {}),
        }),
      );
      for (const item of out.Items ?? []) {
        const b = unsettled(item);
        if (b) found.push(b);
      }
      ExclusiveStartKey = out.LastEvaluatedKey;
      if (!ExclusiveStartKey) break;
    }
    return found;
  }

  /**
   * Writes `next` if the stored revision is still `expectedRev` (0: no record yet), and with it
   * `writes` in the same transaction. Without writes it is a single conditional Put.
   */
  async write(txId: string, expectedRev: number, next: BarrierRecord, nowMs: number, writes: readonly TransactWrite[] = []): Promise<BarrierWriteResult> {
    if (writes.length > MAX_EFFECT_WRITES) throw new Error(`an effect of ${writes.length} writes is too large: a transaction takes the barrier and at most ${MAX_EFFECT_WRITES} more`);
    const put = {
      TableName: this.table,
      Item: encodeBarrier(txId, this.participant, expectedRev + 1, next, nowMs),
      ...(expectedRev === 0
        ? { ConditionExpression: 'attribute_not_exists(pk)' }
        : { ConditionExpression: '#rev = :rev', ExpressionAttributeNames: { '#rev': 'rev' }, ExpressionAttributeValues: { ':rev': expectedRev } }),
    };
    if (writes.length === 0) {
      try {
        await this.doc.send(new PutCommand(put));
        return { kind: 'written' };
      } catch (err) {
        if (err instanceof ConditionalCheckFailedException) return { kind: 'moved' };
        throw err;
      }
    }
    for (let attempt = 1; ; attempt++) {
      try {
        await this.doc.send(new TransactWriteCommand({ TransactItems: [{ Put: put }, ...writes] }));
        return { kind: 'written' };
      } catch (err) {
        if (!(err instanceof TransactionCanceledException)) throw err;
        const codes = (err.CancellationReasons ?? []).map((r) => r.Code ?? 'None');
        if (codes[0] === 'ConditionalCheckFailed') return { kind: 'moved' };
        const failed = codes.flatMap((code, i) => (i > 0 && code === 'ConditionalCheckFailed' ? [`write ${i - 1} (${describeWrite(writes[i - 1]!)})`] : []));
        if (failed.length > 0) return { kind: 'rejected', reason: `condition failed on ${failed.join(', ')}` };
        // Only conflicts with other transactions in flight (or throttling): nothing was written; try again.
        if (attempt >= CONFLICT_ATTEMPTS || !codes.every((c) => c === 'None' || c === 'TransactionConflict' || c === 'ThrottlingError')) throw err;
        await this.sleep(backoffMs(attempt, 40, 1_000, systemRandom()));
      }
    }
  }
}

function describeWrite(write: TransactWrite): string {
  const action = write.Put ? 'Put' : write.Update ? 'Update' : write.Delete ? 'Delete' : 'ConditionCheck';
  const target = write.Put ?? write.Update ?? write.Delete ?? write.ConditionCheck;
  return `${action} ${target?.TableName ?? '?'}`;
}
