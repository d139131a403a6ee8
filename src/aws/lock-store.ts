// The lock table on DynamoDB. One item per resource (partition key `resource`), written whole with
// one conditional Put on the version that was read: the pure rules in src/core/locks.ts compute the
// next item, this module only stores it. A failed condition answers false and the caller re-reads
// (consistently: dynalite ignores ReturnValuesOnConditionCheckFailure and has no transactions).
//
// Other items in the same table, told apart by their key prefix:
// - `held#<owner key>#<scope>`: the resources a transaction's scope locked, written before each
//   acquire, so that commit, abort or Finalize can release all of them even after a crash.
// - `deadlock#<time>#<victim>`: one per resolved deadlock, listed through the sparse `deadlocks` index.
import { decodeCursor, encodeCursor } from '../core/cursor';
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { type LockItem, LOCK_GC_DAYS, LOCK_MODES, WAIT_SHARDS, assertLockInvariants, emptyLock, isIdle, waitShard } from '../core/locks';
import type { DeadlockPage, DeadlockRecord, LockStorePort } from '../core/ports';

/** The sparse index of items that have waiters, split so that no index partition runs hot. */
export const WAITING_INDEX = 'waiting';
export const DEADLOCK_INDEX = 'deadlocks';
export { LOCK_GC_DAYS };
/** Pages read per index partition in one scan of the waiters: a bound, far above any real backlog. */
const MAX_PAGES_PER_SHARD = 1_000;

const holder = z.object({
  mode: z.enum(LOCK_MODES),
  token: z.number(),
  leaseUntilMs: z.number(),
  grantedAtMs: z.number(),
  scopes: z.array(z.string()).min(1),
});
const waiter = z.object({ mode: z.enum(LOCK_MODES), sinceMs: z.number(), untilMs: z.number() });
const storedLock = z.object({
  resource: z.string().min(1),
  version: z.number().int().positive(),
  token: z.number().int().nonnegative(),
  owners: z.record(z.string(), holder).default({}),
  waiters: z.record(z.string(), waiter).default({}),
});

export type { DeadlockPage, DeadlockRecord };
export { WAIT_SHARDS, waitShard };

const heldKey = (owner: string, scope: string): string => `held#${owner}#${scope}`;

export class LockStore implements LockStorePort {
  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly table: string,
  ) {}

  /** The item as it is now (strongly consistent); version 0 when it does not exist. */
  async get(resource: string): Promise<LockItem> {
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { resource }, ConsistentRead: true }));
    return out.Item ? decode(out.Item) : emptyLock(resource);
  }

  /**
   * Store `next` if the item is still at `expectedVersion` (0: absent). False when someone wrote in
   * between. The invariants are checked before the write, as they are after every read.
   */
  async put(next: LockItem, expectedVersion: number, nowMs: number): Promise<boolean> {
    assertLockInvariants(next);
    const hasWaiters = Object.keys(next.waiters).length > 0;
    const item = {
      resource: next.resource,
      version: expectedVersion + 1,
      token: next.token,
      ...(Object.keys(next.owners).length > 0 ? { owners: next.owners } : {}),
      ...(hasWaiters ? { waiters: next.waiters, waitPk: waitShard(next.resource) } : {}),
      // Only an idle item may ever be collected: TTL never removes a lock that is held or waited for.
      ...(isIdle(next) ? { expiresAt: Math.floor(nowMs / 1000) + LOCK_GC_DAYS * 86_400 } : {}),
      updatedAtMs: nowMs,
    };
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: item,
          ...(expectedVersion === 0
            ? { ConditionExpression: 'attribute_not_exists(#r)', ExpressionAttributeNames: { '#r': 'resource' } }
            : { ConditionExpression: '#v = :v', ExpressionAttributeNames: { '#v': 'version' }, ExpressionAttributeValues: { ':v': expectedVersion } }),
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  /** Every item with waiters, through the sparse index (eventually consistent: callers verify). */
  async waiting(): Promise<LockItem[]> {
    const shards = Array.from({ length: WAIT_SHARDS }, (_, i) => `waiting#${i}`);
    const pages = await Promise.all(shards.map((shard) => this.queryAll(WAITING_INDEX, 'waitPk', shard)));
    return pages.flat().map(decode);
  }

  /** Remember, before acquiring it, that `owner`'s `scope` locks `resource`. */
  async addHeld(owner: string, scope: string, resource: string, nowMs: number): Promise<void> {
    await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: { resource: heldKey(owner, scope) },
        UpdateExpression: 'ADD resources :r SET expiresAt = :gc',
        ExpressionAttributeValues: { ':r': new Set([resource]), ':gc': Math.floor(nowMs / 1000) + LOCK_GC_DAYS * 86_400 },
      }),
    );
  }

  async held(owner: string, scope: string): Promise<string[]> {
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: { resource: heldKey(owner, scope) }, ConsistentRead: true }));
    const set = out.Item?.resources as Set<string> | undefined;
    return set ? [...set].sort() : [];
  }

  /** Forget released resources (set subtraction, so an acquire racing with the release keeps its entry). */
  async forgetHeld(owner: string, scope: string, resources: string[]): Promise<void> {
    if (resources.length === 0) return;
    await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: { resource: heldKey(owner, scope) },
        UpdateExpression: 'DELETE resources :r',
        ConditionExpression: 'attribute_exists(#r)',
        ExpressionAttributeNames: { '#r': 'resource' },
        ExpressionAttributeValues: { ':r': new Set(resources) },
      }),
    ).catch((err: unknown) => {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
    });
  }

  /** Record a resolved deadlock; the same id twice is one record. */
  async putDeadlock(record: DeadlockRecord, nowMs: number): Promise<boolean> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { resource: record.id, deadlockPk: 'deadlock', ...record, expiresAt: Math.floor(nowMs / 1000) + LOCK_GC_DAYS * 86_400 },
          ConditionExpression: 'attribute_not_exists(#r)',
          ExpressionAttributeNames: { '#r': 'resource' },
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  /** Most recent first. The cursor is opaque to clients. */
  async listDeadlocks(limit: number, cursor?: string): Promise<DeadlockPage> {
    const out = await this.doc.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: DEADLOCK_INDEX,
        KeyConditionExpression: 'deadlockPk = :d',
        ExpressionAttributeValues: { ':d': 'deadlock' },
        ScanIndexForward: false,
        Limit: limit,
        ...(cursor ? { ExclusiveStartKey: decodeCursor(cursor) } : {}),
      }),
    );
    const items = (out.Items ?? []).map((i) => ({
      id: String(i.id),
      createdAt: String(i.createdAt),
      victim: String(i.victim),
      cycle: i.cycle as string[],
      edges: i.edges as DeadlockRecord['edges'],
      trigger: i.trigger as DeadlockRecord['trigger'],
    }));
    return { items, ...(out.LastEvaluatedKey ? { nextCursor: encodeCursor(out.LastEvaluatedKey) } : {}) };
  }

  private async queryAll(IndexName: string, key: string, value: string): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    let ExclusiveStartKey: Record<string, unknown> | undefined;
    for (let page = 0; page < MAX_PAGES_PER_SHARD; page++) {
      const out = await this.doc.send(
        new QueryCommand({
          TableName: this.table,
          IndexName,
          KeyConditionExpression: '#k = :v',
          ExpressionAttributeNames: { '#k': key },
          ExpressionAttributeValues: { ':v': value },
          ...(ExclusiveStartKey ? { ExclusiveStartKey } : {}),
        }),
      );
      items.push(...(out.Items ?? []));
      ExclusiveStartKey = out.LastEvaluatedKey;
      if (!ExclusiveStartKey) return items;
    }
    throw new Error(`index ${IndexName} partition ${value} has more than ${MAX_PAGES_PER_SHARD} pages`);
  }
}

function decode(raw: Record<string, unknown>): LockItem {
  const parsed = storedLock.safeParse(raw);
  if (!parsed.success) throw new Error(`lock item ${String(raw.resource)} is corrupt: ${parsed.error.message}`);
  const item: LockItem = parsed.data;
  assertLockInvariants(item);
  return item;
}

