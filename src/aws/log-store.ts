// The durable transaction log on DynamoDB. Every state change is one conditional write on one item;
// a failed condition is expected (duplicates, races) and answered with the current record, read
// consistently (dynalite ignores ReturnValuesOnConditionCheckFailure, and so may older regions).
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { decodeCursor, encodeCursor } from './cursor';
import type { AckEntry, Phase, PhaseTwoResult, TxRecord, TxStatus, VoteEntry } from '../core/transaction';

export { documentClient } from './document-client';

export interface WriteResult {
  /** True when this call's write happened; false when the condition failed (duplicate or moved on). */
  applied: boolean;
  /** The record after the write, or as it is now when the write did not apply; undefined if absent. */
  record: TxRecord | undefined;
}

export interface IdempotencyRecord {
  pk: string;
  txId: string;
  requestHash: string;
  createdAt: string;
}

export interface ListPage {
  items: Pick<TxRecord, 'txId' | 'status' | 'createdAt' | 'updatedAt' | 'decision' | 'decisionReason'>[];
  nextCursor?: string;
}

export interface StalePage {
  items: Pick<TxRecord, 'txId' | 'status' | 'updatedAt' | 'prepareDeadlineAt'>[];
  nextKey?: Record<string, unknown>;
}

const EXPECTED_STATUS: Record<Phase, TxStatus> = { PREPARE: 'PREPARING', COMMIT: 'COMMITTING', ABORT: 'ABORTING' };

export class TxLog {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    private readonly table: string,
  ) {}

  /** Write the first record; false if a record with this id exists already. */
  async create(record: TxRecord): Promise<boolean> {
    try {
      await this.doc.send(new PutCommand({ TableName: this.table, Item: record, ConditionExpression: 'attribute_not_exists(pk)' }));
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  async get(txId: string): Promise<TxRecord | undefined> {
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk: txId }, ConsistentRead: true }));
    return out.Item as TxRecord | undefined;
  }

  /** Record a vote once, only while the transaction is still preparing. */
  recordVote(txId: string, participant: string, entry: VoteEntry): Promise<WriteResult> {
    return this.conditionalUpdate(txId, {
      UpdateExpression: 'SET votes.#p = :entry, updatedAt = :at',
      ConditionExpression: '#status = :preparing AND attribute_not_exists(votes.#p)',
      ExpressionAttributeNames: { '#p': participant, '#status': 'status' },
      ExpressionAttributeValues: { ':entry': entry, ':at': entry.at, ':preparing': 'PREPARING' },
    });
  }

  /** Record an acknowledgement once, only in the phase it acknowledges. */
  recordAck(txId: string, participant: string, entry: AckEntry): Promise<WriteResult> {
    return this.conditionalUpdate(txId, {
      UpdateExpression: 'SET acks.#p = :entry, updatedAt = :at',
      ConditionExpression: '#status = :phaseStatus AND attribute_not_exists(acks.#p)',
      ExpressionAttributeNames: { '#p': participant, '#status': 'status' },
      ExpressionAttributeValues: { ':entry': entry, ':at': entry.at, ':phaseStatus': EXPECTED_STATUS[entry.phase] },
    });
  }

  /**
   * Store the task token of the phase's current attempt, only while the record is in that phase.
   * Counts attempts per phase too, so re-sent messages carry their attempt number.
   */
  storeTaskToken(txId: string, phase: Phase, taskToken: string, at: string): Promise<WriteResult> {
    return this.conditionalUpdate(txId, {
      UpdateExpression: 'SET taskToken = :token, taskPhase = :phase, updatedAt = :at ADD #attempts :one',
      ConditionExpression: '#status = :expected',
      ExpressionAttributeNames: { '#status': 'status', '#attempts': `${phase.toLowerCase()}Attempts` },
      ExpressionAttributeValues: { ':token': taskToken, ':phase': phase, ':at': at, ':one': 1, ':expected': EXPECTED_STATUS[phase] },
    });
  }

  /**
   * Finalize: the phase-two status becomes final, the record leaves the open index, and the TTL
   * starts. Conditional on the phase-two status, so a second Finalize (a retried task, a recovery
   * execution) changes nothing and reads the record instead.
   */
  finalize(txId: string, result: PhaseTwoResult, at: string): Promise<WriteResult> {
    return this.conditionalUpdate(txId, {
      UpdateExpression: 'SET #status = :final, finishedAt = :at, updatedAt = :at, expiresAt = :expiresAt REMOVE openPk, taskToken, taskPhase',
      ConditionExpression: '#status = :from',
      ExpressionAttributeNames: { '#status': 'status' },
      ExpressionAttributeValues: { ':final': result.final, ':from': result.from, ':expiresAt': result.expiresAt, ':at': at },
    });
  }

  /**
   * Record, once per transaction, which participants phase two found in doubt, only while the
   * record is still in that phase. `updatedAt` is left alone: being in doubt is not progress.
   */
  markInDoubt(txId: string, phase: 'COMMIT' | 'ABORT', since: Record<string, string>): Promise<WriteResult> {
    return this.conditionalUpdate(txId, {
      UpdateExpression: 'SET inDoubtSince = :since',
      ConditionExpression: '#status = :phaseStatus AND attribute_not_exists(inDoubtSince)',
      ExpressionAttributeNames: { '#status': 'status' },
      ExpressionAttributeValues: { ':since': since, ':phaseStatus': EXPECTED_STATUS[phase] },
    });
  }

  /**
   * Decide ABORT from outside the state machine (a failed start; later the client, the sweeper
   * and the deadlock detector). The same conditional write as the Decide step, so exactly one
   * decision ever exists; the abort phase that follows is the state machine's or recovery's.
   */
  decideAbort(txId: string, reason: string, at: string): Promise<WriteResult> {
    return this.conditionalUpdate(txId, {
      UpdateExpression: 'SET #status = :aborting, decision = :abort, decisionReason = :reason, decidedAt = :at, updatedAt = :at',
      ConditionExpression: '#status = :preparing',
      ExpressionAttributeNames: { '#status': 'status' },
      ExpressionAttributeValues: { ':aborting': 'ABORTING', ':abort': 'ABORT', ':reason': reason, ':at': at, ':preparing': 'PREPARING' },
    });
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
  claimRecovery(txId: string, seen: { executionName: string; recoveries: number }, next: { executionName: string; at: string }): Promise<WriteResult> {
    const seenName = seen.executionName === txId ? '(executionName = :seenName OR attribute_not_exists(executionName))' : 'executionName = :seenName';
    const seenCount = seen.recoveries === 0 ? 'attribute_not_exists(recoveries)' : 'recoveries = :seenCount';
    return this.conditionalUpdate(txId, {
      UpdateExpression: 'SET executionName = :next, recoveries = :count, updatedAt = :at',
      ConditionExpression: `attribute_exists(openPk) AND ${seenName} AND ${seenCount}`,
      ExpressionAttributeValues: {
        ':next': next.executionName,
        ':count': seen.recoveries + 1,
        ':at': next.at,
        ':seenName': seen.executionName,
        ...(seen.recoveries === 0 ? {} : { ':seenCount': seen.recoveries }),
      },
    });
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
    try {
      await this.doc.send(new PutCommand({ TableName: this.table, Item: item, ConditionExpression: 'attribute_not_exists(pk)' }));
      return item;
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { pk: idempotencyPk(key) }, ConsistentRead: true }));
      if (!out.Item) throw new Error(`idempotency key ${key} vanished after a failed claim`);
      return out.Item as IdempotencyRecord;
    }
  }

  private async conditionalUpdate(
    txId: string,
    expression: Pick<UpdateCommand['input'], 'UpdateExpression' | 'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'>,
  ): Promise<WriteResult> {
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { pk: txId },
          ...expression,
          // attribute_exists(pk) keeps an update from creating a record for an unknown transaction.
          ConditionExpression: `attribute_exists(pk) AND (${expression.ConditionExpression})`,
          ReturnValues: 'ALL_NEW',
        }),
      );
      return { applied: true, record: out.Attributes as TxRecord };
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      return { applied: false, record: await this.get(txId) };
    }
  }
}

const idempotencyPk = (key: string) => `idem#${key}`;
