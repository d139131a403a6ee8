// The durable transaction log on DynamoDB. Every state change is one conditional write on one item,
// derived from the table of state changes (src/core/log-transitions.ts); a failed condition is
// expected (duplicates, races) and answered with the current record, read consistently (dynalite
// ignores ReturnValuesOnConditionCheckFailure, and so may older regions). Both indexes are sparse or
// sharded and written only when a record is created, parked or finished (cdk/log-table.ts).
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { BatchGetCommand, type BatchGetCommandOutput, DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { toDynamo } from '../core/log-dsl';
import { backoffMs } from '../core/recovery';
import { systemRandom, systemSleep } from './system';
import { type ListKey, type PutResult, TableTxLog } from '../core/log';
import { type ItemUpdate, type PutWrite, type TransitionName, type UpdateWrite, assertTransition } from '../core/log-transitions';
import type { GroupsPage, MembersPage, WriteResult } from '../core/ports';
import type { TxRecord, TxStatus } from '../core/transaction';

export { documentClient } from './document-client';
export type { IdempotencyRecord, ListPage, WriteResult } from '../core/ports';

/** BatchGetItem takes at most 100 keys per call. */
const BATCH_GET_MAX = 100;

export class TxLog extends TableTxLog {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly table: string,
  ) {
    super();
  }

  async openMembers(group: string, limit: number, startKey?: Record<string, unknown>): Promise<MembersPage> {
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: 'open',
        KeyConditionExpression: 'og = :g',
        ExpressionAttributeValues: { ':g': group },
        ScanIndexForward: true,
        Limit: limit,
        ...(startKey ? { ExclusiveStartKey: startKey } : {}),
      }),
    );
    const items = (out.Items ?? []).map((i) => ({ txId: i.pk as string, prepareDeadlineAt: i.prepareDeadlineAt as number }));
    return { items, ...(out.LastEvaluatedKey ? { nextKey: out.LastEvaluatedKey } : {}) };
  }

  async openGroups(limit: number, startKey?: Record<string, unknown>, overdueBefore?: number): Promise<GroupsPage> {
    const out = await this.doc.send(
      new ScanCommand({
        TableName: this.table,
        IndexName: 'open',
        ProjectionExpression: 'og, prepareDeadlineAt',
        Limit: limit,
        ...(startKey ? { ExclusiveStartKey: startKey } : {}),
      }),
    );
    const groups: Record<string, number> = {};
    let overdue = 0;
    for (const i of out.Items ?? []) {
      groups[i.og as string] = (groups[i.og as string] ?? 0) + 1;
      if (overdueBefore !== undefined && (i.prepareDeadlineAt as number) < overdueBefore) overdue++;
    }
    return { groups, overdue, ...(out.LastEvaluatedKey ? { nextKey: out.LastEvaluatedKey } : {}) };
  }

  protected async listShard(shard: string, limit: number, after?: ListKey): Promise<{ keys: ListKey[]; more: boolean }> {
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: 'byCreated',
        KeyConditionExpression: 'lp = :s',
        ExpressionAttributeValues: { ':s': shard },
        ScanIndexForward: false,
        Limit: limit,
        ...(after ? { ExclusiveStartKey: { pk: after.pk, lp: shard, createdAt: after.createdAt } } : {}),
      }),
    );
    const keys = (out.Items ?? []).map((i) => ({ pk: i.pk as string, createdAt: i.createdAt as string }));
    return { keys, more: out.LastEvaluatedKey !== undefined };
  }

  protected async read(pk: string): Promise<Record<string, unknown> | undefined> {
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk }, ConsistentRead: true }));
    return out.Item;
  }

  protected async readMany(pks: readonly string[]): Promise<Record<string, unknown>[]> {
    const found: Record<string, unknown>[] = [];
    // Each key once (BatchGetItem refuses duplicates within a call, and the memory log answers each once).
    const unique = [...new Set(pks)];
    for (let i = 0; i < unique.length; i += BATCH_GET_MAX) {
      let keys: Record<string, unknown>[] | undefined = unique.slice(i, i + BATCH_GET_MAX).map((pk) => ({ pk }));
      // Unprocessed keys (throttling) are asked for again, backing off, until none are left.
      for (let attempt = 0; keys && keys.length > 0; attempt++) {
        if (attempt > 0) await systemSleep(backoffMs(attempt, 50, 2_000, systemRandom()));
        const out: BatchGetCommandOutput = await this.doc.send(new BatchGetCommand({ RequestItems: { [this.table]: { Keys: keys, ConsistentRead: true } } }));
        found.push(...(out.Responses?.[this.table] ?? []));
        keys = out.UnprocessedKeys?.[this.table]?.Keys;
      }
    }
    return found;
  }

  /** A conditional put; when the condition failed, the item the failed write returned (no second request). */
  protected async put(write: PutWrite): Promise<PutResult> {
    try {
      await this.doc.send(new PutCommand({ TableName: this.table, Item: write.item, ...toDynamo(write.condition), ReturnValuesOnConditionCheckFailure: 'ALL_OLD' }));
      return { written: true };
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return { written: false, existing: currentItem(err) };
      throw err;
    }
  }

  /** A conditional update of an item that is not a record; false when the condition failed. */
  protected async updateItem(u: ItemUpdate): Promise<boolean> {
    try {
      await this.doc.send(new UpdateCommand({ TableName: this.table, Key: { pk: u.pk }, ...toDynamo(u.write.condition, u.write.update) }));
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  /**
   * One state change of the table, asserted before and after; a failed condition answers the record
   * as it is now, returned by the failed write itself (`ReturnValuesOnConditionCheckFailure`): a
   * duplicate or a lost race costs no second request. No item back means there is no record.
   */
  protected async update(txId: string, name: TransitionName, before: TxStatus | undefined, write: UpdateWrite): Promise<WriteResult> {
    assertTransition(name, before);
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { pk: txId },
          ...toDynamo(write.condition, write.update),
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      const record = out.Attributes as TxRecord | undefined;
      assertTransition(name, before, record);
      return { applied: true, record };
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      return { applied: false, record: currentItem(err) as TxRecord | undefined };
    }
  }
}

/**
 * The item a failed conditional write returned (`ReturnValuesOnConditionCheckFailure: ALL_OLD`), as
 * the document client would give it: it does not convert an error's item, which comes as DynamoDB's
 * attribute values. Undefined when there is no item.
 */
function currentItem(err: ConditionalCheckFailedException): Record<string, unknown> | undefined {
  return err.Item ? unmarshall(err.Item) : undefined;
}
