// The durable transaction log on DynamoDB. Every state change is one conditional write on one item,
// derived from the table of state changes (src/core/log-transitions.ts);
// a failed condition is expected (duplicates, races) and answered with the current record, read
// consistently (dynalite ignores ReturnValuesOnConditionCheckFailure, and so may older regions).
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { decodeCursor, encodeCursor } from './cursor';
import { toDynamo } from '../core/log-dsl';
import { LOG_TRANSITIONS, type PutWrite, type TransitionName, type UpdateWrite, assertTransition, claimIdempotencyKeyWrite, idempotencyPk } from '../core/log-transitions';
import type { IdempotencyRecord, ListPage, StalePage, TxLogPort, WriteResult } from '../core/ports';
import { type AckEntry, type Outcome, PHASE_STATUS, type Phase, type PhaseTwoResult, type TxRecord, type TxStatus, type VoteEntry } from '../core/transaction';

export { documentClient } from './document-client';
export type { IdempotencyRecord, ListPage, StalePage, WriteResult } from '../core/ports';

export class TxLog implements TxLogPort {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  /** Write the first record; false if a record with this id exists already. */
  async create(record: TxRecord): Promise<boolean> {
    assertTransition('create', null);
    return this.put(LOG_TRANSITIONS.create.write(record));
  }

  async get(txId: string): Promise<TxRecord | undefined> {
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk: txId }, ConsistentRead: true }));
    return out.Item as TxRecord | undefined;
  }

  async recordVote(txId: string, participant: string, entry: VoteEntry): Promise<WriteResult> {
    return this.transition(txId, 'recordVote', 'PREPARING', LOG_TRANSITIONS.recordVote.write(participant, entry));
  }

  async recordAck(txId: string, participant: string, entry: AckEntry): Promise<WriteResult> {
    return this.transition(txId, 'recordAck', PHASE_STATUS[entry.phase], LOG_TRANSITIONS.recordAck.write(participant, entry));
  }

  async storeTaskToken(txId: string, phase: Phase, taskToken: string, at: string): Promise<WriteResult> {
    return this.transition(txId, 'storeTaskToken', PHASE_STATUS[phase], LOG_TRANSITIONS.storeTaskToken.write(phase, taskToken, at));
  }

  async finalize(txId: string, result: PhaseTwoResult, at: string): Promise<WriteResult> {
    return this.transition(txId, 'finalize', result.from, LOG_TRANSITIONS.finalize.write(result, at));
  }

  async markInDoubt(txId: string, phase: 'COMMIT' | 'ABORT', since: Record<string, string>): Promise<WriteResult> {
    return this.transition(txId, 'markInDoubt', PHASE_STATUS[phase], LOG_TRANSITIONS.markInDoubt.write(phase, since));
  }

  async decideAbort(txId: string, reason: string, at: string): Promise<WriteResult> {
    return this.transition(txId, 'decideAbort', 'PREPARING', LOG_TRANSITIONS.decideAbort.write(reason, at));
  }

  /**
   * The state machine's Decide step, for tests and tools: production decides in the state machine
   * (cdk/workflow.ts), with the same write.
   */
  async decide(txId: string, prepare: { status: 'COMMITTING' | 'ABORTING'; outcome: Outcome; reason: string }, at: string): Promise<WriteResult> {
    return this.transition(txId, 'decide', 'PREPARING', LOG_TRANSITIONS.decide.write({ ...prepare, at }));
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

  /**
   * Claim the next recovery of a transaction whose execution `seenExecution` is gone: only one
   * claimant per recovery number wins, so two sweepers never both start one. Fails if the record
   * finished, or someone else recovered it since it was read.
   */
  async claimRecovery(txId: string, seen: { executionName: string; recoveries: number }, next: { executionName: string; at: string }): Promise<WriteResult> {
    return this.transition(txId, 'claimRecovery', undefined, LOG_TRANSITIONS.claimRecovery.write(txId, seen, next));
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

  /** Claim an idempotency key for a transaction id; answers the existing claim if there is one. */
  async claimIdempotencyKey(key: string, txId: string, requestHash: string, at: string): Promise<IdempotencyRecord> {
    const item: IdempotencyRecord = { pk: idempotencyPk(key), txId, requestHash, createdAt: at };
    if (await this.put(claimIdempotencyKeyWrite(item))) return item;
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk: item.pk }, ConsistentRead: true }));
    if (!out.Item) throw new Error(`idempotency key ${key} vanished after a failed claim`);
    return out.Item as IdempotencyRecord;
  }

  /** A conditional put; false when the condition failed. */
  private async put(write: PutWrite): Promise<boolean> {
    try {
      await this.doc.send(new PutCommand({ TableName: this.table, Item: write.item, ...toDynamo(write.condition) }));
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  /** One state change of the table, asserted before and after; a failed condition answers the record as it is now. */
  private async transition(txId: string, name: TransitionName, before: TxStatus | undefined, write: UpdateWrite): Promise<WriteResult> {
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
