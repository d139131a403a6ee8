// The durable transaction log on DynamoDB. Every state change is one conditional write on one item,
// derived from the table of state changes (src/core/log-transitions.ts);
// a failed condition is expected (duplicates, races) and answered with the current record, read
// consistently (dynalite ignores ReturnValuesOnConditionCheckFailure, and so may older regions).
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { decodeCursor, encodeCursor } from './cursor';
import { toDynamo } from '../core/log-dsl';
import { TableTxLog } from '../core/log';
import { type PutWrite, type TransitionName, type UpdateWrite, assertTransition } from '../core/log-transitions';
import type { ListPage, StalePage, WriteResult } from '../core/ports';
import type { TxRecord, TxStatus } from '../core/transaction';

export { documentClient } from './document-client';
export type { IdempotencyRecord, ListPage, StalePage, WriteResult } from '../core/ports';

export class TxLog extends TableTxLog {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly table: string,
  ) {
    super();
  }

  /**
   * Open transactions whose `updatedAt` is at or before `beforeIso`, oldest first, through the sparse
   * `open` index (eventually consistent: callers re-read each record before acting on it).
   */
  async listStale(beforeIso: string, limit: number, startKey?: Record<string, unknown>): Promise<StalePage> {
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: 'open',
        KeyConditionExpression: 'openPk = :open AND updatedAt <= :before',
        ExpressionAttributeValues: { ':open': 'open', ':before': beforeIso },
        ScanIndexForward: true,
        Limit: limit,
        ...(startKey ? { ExclusiveStartKey: startKey } : {}),
      }),
    );
    const items = (out.Items ?? []).map((i) => ({
      txId: i.txId as string,
      status: i.status as TxStatus,
      updatedAt: i.updatedAt as string,
      prepareDeadlineAt: i.prepareDeadlineAt as number,
    }));
    return { items, ...(out.LastEvaluatedKey ? { nextKey: out.LastEvaluatedKey } : {}) };
  }

  /** Most recent first, through the `byCreated` index. The cursor is opaque to clients. */
  async list(limit: number, cursor?: string): Promise<ListPage> {
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: 'byCreated',
        KeyConditionExpression: 'listPk = :tx',
        ExpressionAttributeValues: { ':tx': 'tx' },
        ScanIndexForward: false,
        Limit: limit,
        ...(cursor ? { ExclusiveStartKey: decodeCursor(cursor) } : {}),
      }),
    );
    const items = (out.Items ?? []).map((i) => ({
      txId: i.txId as string,
      status: i.status as TxStatus,
      createdAt: i.createdAt as string,
      updatedAt: i.updatedAt as string,
      ...(i.decision ? { decision: i.decision, decisionReason: i.decisionReason } : {}),
    }));
    return { items, ...(out.LastEvaluatedKey ? { nextCursor: encodeCursor(out.LastEvaluatedKey) } : {}) };
  }

  protected async read(pk: string): Promise<Record<string, unknown> | undefined> {
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk }, ConsistentRead: true }));
    return out.Item;
  }

  /** A conditional put; false when the condition failed. */
  protected async put(write: PutWrite): Promise<boolean> {
    try {
      await this.doc.send(new PutCommand({ TableName: this.table, Item: write.item, ...toDynamo(write.condition) }));
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  /** One state change of the table, asserted before and after; a failed condition answers the record as it is now. */
  protected async update(txId: string, name: TransitionName, before: TxStatus | undefined, write: UpdateWrite): Promise<WriteResult> {
    assertTransition(name, before);
    try {
      const out = await this.doc.send(
        new UpdateCommand({ TableName: this.table, Key: { pk: txId }, ...toDynamo(write.condition, write.update), ReturnValues: 'ALL_NEW' }),
      );
      const record = out.Attributes as TxRecord | undefined;
      assertTransition(name, before, record);
      return { applied: true, record };
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      return { applied: false, record: await this.get(txId) };
    }
  }
}
