// Barrier records in the participant's own table: one item per txId, key `pk` = `barrier#<txId>`.
// Every write is a full Put conditioned on the revision that was read, so a write based on a stale
// read fails and the caller re-reads (dynalite ignores ReturnValuesOnConditionCheckFailure anyway).
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { ABSENT, type BarrierRecord, type StoredBarrier } from '../core/barrier';
import { vote } from '../core/messages';

export const BARRIER_KEY_PREFIX = 'barrier#';

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
