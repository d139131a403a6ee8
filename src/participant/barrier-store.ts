// Barrier records in the participant's own table: one item per txId, key `pk` = `barrier#<txId>`.
// Every write is a full Put conditioned on the revision that was read, so a write based on a stale
// read fails and the caller re-reads (dynalite ignores ReturnValuesOnConditionCheckFailure anyway).
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { ABSENT, type BarrierRecord, type StoredBarrier } from '../core/barrier';
import { vote } from '../core/messages';

export const BARRIER_KEY_PREFIX = 'barrier#';

export interface UnsettledBarrier {
  txId: string;
  state: 'PREPARING' | 'PREPARED' | 'ABORTED';
  vote?: 'YES' | 'NO' | 'READ_ONLY';
  updatedAtMs: number;
}

export function barrierKey(txId: string): string {
  return `${BARRIER_KEY_PREFIX}${txId}`;
}

const operationJson = z.string().optional();

/** The item as stored: checked on every read, so a corrupt record fails loudly instead of being guessed at. */
const barrierItem = z.discriminatedUnion('state', [
  z.object({
    state: z.literal('PREPARING'),
    rev: z.number().int().positive(),
    operationJson,
    claimRunId: z.string().min(1),
    claimUntilMs: z.number(),
  }),
  z.object({ state: z.literal('PREPARED'), rev: z.number().int().positive(), operationJson, vote, reason: z.string().optional() }),
  z.object({ state: z.literal('COMMITTED'), rev: z.number().int().positive(), operationJson }),
  z.object({ state: z.literal('ABORTED'), rev: z.number().int().positive(), operationJson, prepareStarted: z.boolean() }),
]);

export class BarrierStore {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly table: string,
    private readonly participant: string,
  ) {}

  async read(txId: string): Promise<StoredBarrier> {
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk: barrierKey(txId) }, ConsistentRead: true }));
    if (!out.Item) return ABSENT;
    const parsed = barrierItem.safeParse(out.Item);
    if (!parsed.success) throw new Error(`barrier record ${barrierKey(txId)} in ${this.table} is corrupt: ${parsed.error.message}`);
    const item = parsed.data;
    const operation = item.operationJson === undefined ? undefined : (JSON.parse(item.operationJson) as unknown);
    return { rev: item.rev, record: toRecord(item, operation) };
  }

  /**
   * Barrier records a crash may have left half done, for the restart scan: undecided ones
   * (PREPARING, PREPARED with YES) and, updated at or after `sinceMs`, ones whose cleanup may not
   * have run (ABORTED after a prepare started, PREPARED with NO or READ_ONLY). A Scan of the
   * participant's table, so bounded by `maxPages`.
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
          ProjectionExpression: 'txId, #state, #vote, updatedAtMs',
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
        if (typeof item.txId !== 'string') continue;
        const updatedAtMs = Number(item.updatedAtMs ?? 0);
        const state = item.state as UnsettledBarrier['state'];
        // PREPARED with NO/READ_ONLY only within the window: older ones were cleaned up long ago.
        if (state === 'PREPARED' && item.vote !== 'YES' && updatedAtMs < sinceMs) continue;
        found.push({ txId: item.txId, state, ...(typeof item.vote === 'string' ? { vote: item.vote as UnsettledBarrier['vote'] } : {}), updatedAtMs });
      }
      ExclusiveStartKey = out.LastEvaluatedKey;
      if (!ExclusiveStartKey) break;
    }
    return found;
  }

  /** Writes `next` if the stored revision is still `expectedRev` (0: no record yet); false if it moved on. */
  async write(txId: string, expectedRev: number, next: BarrierRecord, nowMs: number): Promise<boolean> {
    if (next.state === 'NONE') throw new Error('a barrier record is never written back to NONE');
    const item = { pk: barrierKey(txId), txId, participant: this.participant, rev: expectedRev + 1, updatedAtMs: nowMs, ...toItem(next) };
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

function toRecord(item: z.infer<typeof barrierItem>, operation: unknown): BarrierRecord {
  switch (item.state) {
    case 'PREPARING':
      return { state: 'PREPARING', operation, claim: { runId: item.claimRunId, untilMs: item.claimUntilMs } };
    case 'PREPARED':
      return { state: 'PREPARED', operation, vote: item.vote, ...(item.reason === undefined ? {} : { reason: item.reason }) };
    case 'COMMITTED':
      return { state: 'COMMITTED', operation };
    case 'ABORTED':
      return { state: 'ABORTED', prepareStarted: item.prepareStarted, ...(operation === undefined ? {} : { operation }) };
  }
}

// The operation is kept as a JSON string: it is opaque to the barrier, and DynamoDB's type mapping
// (empty sets, number precision, undefined members) must not change what user code gets back.
function toItem(record: Exclude<BarrierRecord, { state: 'NONE' }>): Record<string, unknown> {
  const operationJson = 'operation' in record && record.operation !== undefined ? { operationJson: JSON.stringify(record.operation) } : {};
  switch (record.state) {
    case 'PREPARING':
      return { state: record.state, ...operationJson, claimRunId: record.claim.runId, claimUntilMs: record.claim.untilMs };
    case 'PREPARED':
      return { state: record.state, ...operationJson, vote: record.vote, ...(record.reason === undefined ? {} : { reason: record.reason }) };
    case 'COMMITTED':
      return { state: record.state, ...operationJson };
    case 'ABORTED':
      return { state: record.state, ...operationJson, prepareStarted: record.prepareStarted };
  }
}
