// The two effect patterns the demo services share, keyed by txId: an escrow hold on a counter item
// (stock, money) and a record created once per transaction. Each is a write (a TransactWriteItems
// action) that the participant SDK applies with its barrier transition; only the seeding writes here.
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { TransactWrite } from '../participant/barrier-store';

/** The counter attributes of an escrow item: free (available) -> held -> done (sold, charged). */
export interface HoldFields {
  free: string;
  held: string;
  done: string;
}

/** Why a hold cannot be placed, from a read of the item (undefined: it can). */
export type HoldRefusal = { kind: 'unknown' } | { kind: 'short'; free: number } | { kind: 'fenced'; lastToken: number };

export class DemoTable {
  constructor(
    readonly doc: DynamoDBDocumentClient,
    readonly name: string,
  ) {}

  async get(pk: string): Promise<Record<string, unknown> | undefined> {
    const out = await this.doc.send(new GetCommand({ TableName: this.name, Key: { pk }, ConsistentRead: true }));
    return out.Item;
  }

  /** Reads the item and says why `quantity` cannot be held on it now (undefined: it can). */
  async holdRefusal(pk: string, quantity: number, f: HoldFields, token?: number): Promise<HoldRefusal | undefined> {
    const item = await this.get(pk);
    if (!item) return { kind: 'unknown' };
    if (token !== undefined && typeof item.lastToken === 'number' && item.lastToken > token) return { kind: 'fenced', lastToken: item.lastToken };
    const free = Number(item[f.free]);
    return free >= quantity ? undefined : { kind: 'short', free };
  }

  /**
   * The write that moves `quantity` from free to held and records holds.<txId>, under the
   * conditions the read relied on. With a fencing `token` (from the lock service), it is refused if
   * the item has seen a newer token: its writer lost the lock and must not act on what it read.
   * Consuming and releasing a hold are not fenced: they touch only the txId's own hold, and a
   * release must still happen after the lock passed on, or the stock would leak.
   */
  placeHold(pk: string, txId: string, quantity: number, f: HoldFields, token?: number): TransactWrite {
    const fenced = token !== undefined;
    return {
      Update: {
        TableName: this.name,
        Key: { pk },
        UpdateExpression: `SET #free = #free - :q, #held = #held + :q, holds.#tx = :q${fenced ? ', lastToken = :token' : ''}`,
        ConditionExpression: `attribute_exists(pk) AND #free >= :q AND attribute_not_exists(holds.#tx)${fenced ? ' AND (attribute_not_exists(lastToken) OR lastToken <= :token)' : ''}`,
        ExpressionAttributeNames: { '#free': f.free, '#held': f.held, '#tx': txId },
        ExpressionAttributeValues: { ':q': quantity, ...(fenced ? { ':token': token } : {}) },
      },
    };
  }

  /** The write that moves the txId's hold from held to done. */
  consumeHold(pk: string, txId: string, quantity: number, f: HoldFields): TransactWrite {
    return this.settleHold(pk, txId, quantity, f.held, f.done);
  }

  /** The write that moves the txId's hold back to free. */
  releaseHold(pk: string, txId: string, quantity: number, f: HoldFields): TransactWrite {
    return this.settleHold(pk, txId, quantity, f.held, f.free);
  }

  /** Moves the txId's hold of `quantity` from the `held` counter to `into` and forgets it; refused unless that hold is there. */
  private settleHold(pk: string, txId: string, quantity: number, held: string, into: string): TransactWrite {
    return {
      Update: {
        TableName: this.name,
        Key: { pk },
        UpdateExpression: 'SET #held = #held - :q, #into = #into + :q REMOVE holds.#tx',
        ConditionExpression: 'holds.#tx = :q',
        ExpressionAttributeNames: { '#held': held, '#into': into, '#tx': txId },
        ExpressionAttributeValues: { ':q': quantity },
      },
    };
  }

  /** Writes the item unless one with its key exists; false if it did (it is left as it was). */
  async putIfAbsent(item: Record<string, unknown> & { pk: string }): Promise<boolean> {
    try {
      await this.doc.send(new PutCommand({ TableName: this.name, Item: item, ConditionExpression: 'attribute_not_exists(pk)' }));
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  /** The write that creates the record for txId; it is refused if a record with its key exists. */
  create(pk: string, txId: string, attributes: Record<string, unknown>): TransactWrite {
    return { Put: { TableName: this.name, Item: { ...attributes, pk, txId }, ConditionExpression: 'attribute_not_exists(pk)' } };
  }

  /** The write that sets status `to` on txId's record in status `from`. */
  transition(pk: string, txId: string, from: string, to: string): TransactWrite {
    return {
      Update: {
        TableName: this.name,
        Key: { pk },
        UpdateExpression: 'SET #status = :to',
        ConditionExpression: 'txId = :tx AND #status = :from',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: { ':tx': txId, ':from': from, ':to': to },
      },
    };
  }

  /** The write that deletes txId's record in `status`. */
  deleteIf(pk: string, txId: string, status: string): TransactWrite {
    return {
      Delete: {
        TableName: this.name,
        Key: { pk },
        ConditionExpression: 'txId = :tx AND #status = :status',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: { ':tx': txId, ':status': status },
      },
    };
  }
}

export function holdOf(item: Record<string, unknown>, txId: string): number | undefined {
  const holds = item.holds as Record<string, number> | undefined;
  return holds?.[txId];
}
