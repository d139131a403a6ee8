// The two effect patterns the demo services share, both keyed by txId so that a repeat is a no-op:
// an escrow hold on a counter item (stock, money) and a record created once per transaction.
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, type DynamoDBDocumentClient, GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';

/** The counter attributes of an escrow item: free (available) -> held -> done (sold, charged). */
export interface HoldFields {
  free: string;
  held: string;
  done: string;
}

export type HoldResult = { kind: 'placed' } | { kind: 'unknown' } | { kind: 'short'; free: number } | { kind: 'fenced'; lastToken: number };

export class DemoTable {
  constructor(
    readonly doc: DynamoDBDocumentClient,
    readonly name: string,
  ) {}

  async get(pk: string): Promise<Record<string, unknown> | undefined> {
    const out = await this.doc.send(new GetCommand({ TableName: this.name, Key: { pk }, ConsistentRead: true }));
    return out.Item;
  }

  /**
   * Moves `quantity` from free to held and records holds.<txId>; a hold already there counts as placed.
   * With a fencing `token` (from the lock service), the write is refused if the item has seen a
   * newer token: its writer lost the lock (lease taken over) and must not act on what it read.
   * Consuming and releasing a hold are not fenced: they touch only the txId's own hold, and a
   * release must still happen after the lock passed on, or the stock would leak.
   */
  async placeHold(pk: string, txId: string, quantity: number, f: HoldFields, token?: number): Promise<HoldResult> {
    const fenced = token !== undefined;
    const placed = await this.conditionalUpdate({
      Key: { pk },
      UpdateExpression: `SET #free = #free - :q, #held = #held + :q, holds.#tx = :q${fenced ? ', lastToken = :token' : ''}`,
      ConditionExpression: `attribute_exists(pk) AND #free >= :q AND attribute_not_exists(holds.#tx)${fenced ? ' AND (attribute_not_exists(lastToken) OR lastToken <= :token)' : ''}`,
      ExpressionAttributeNames: { '#free': f.free, '#held': f.held, '#tx': txId },
      ExpressionAttributeValues: { ':q': quantity, ...(fenced ? { ':token': token } : {}) },
    });
    if (placed) return { kind: 'placed' };
    const item = await this.get(pk);
    if (!item) return { kind: 'unknown' };
    if (holdOf(item, txId) !== undefined) return { kind: 'placed' };
    if (fenced && typeof item.lastToken === 'number' && item.lastToken > token) return { kind: 'fenced', lastToken: item.lastToken };
    return { kind: 'short', free: Number(item[f.free]) };
  }

  /** Moves the txId's hold from held to done; false if there was no such hold (already done). */
  consumeHold(pk: string, txId: string, quantity: number, f: HoldFields): Promise<boolean> {
    return this.conditionalUpdate({
      Key: { pk },
      UpdateExpression: 'SET #held = #held - :q, #done = #done + :q REMOVE holds.#tx',
      ConditionExpression: 'holds.#tx = :q',
      ExpressionAttributeNames: { '#held': f.held, '#done': f.done, '#tx': txId },
      ExpressionAttributeValues: { ':q': quantity },
    });
  }

  /** Moves the txId's hold back to free; false if there was none (never placed, released or consumed). */
  releaseHold(pk: string, txId: string, quantity: number, f: HoldFields): Promise<boolean> {
    return this.conditionalUpdate({
      Key: { pk },
      UpdateExpression: 'SET #free = #free + :q, #held = #held - :q REMOVE holds.#tx',
      ConditionExpression: 'holds.#tx = :q',
      ExpressionAttributeNames: { '#free': f.free, '#held': f.held, '#tx': txId },
      ExpressionAttributeValues: { ':q': quantity },
    });
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

  /** Creates the record for txId; 'mine' if this transaction created it before, 'taken' if another did. */
  async createOnce(pk: string, txId: string, attributes: Record<string, unknown>): Promise<'created' | 'mine' | 'taken'> {
    if (await this.putIfAbsent({ ...attributes, pk, txId })) return 'created';
    const item = await this.get(pk);
    return item?.txId === txId ? 'mine' : 'taken';
  }

  /** Sets status `to` if the record belongs to txId and is in `from`; false otherwise (done before, or not ours). */
  transition(pk: string, txId: string, from: string, to: string): Promise<boolean> {
    return this.conditionalUpdate({
      Key: { pk },
      UpdateExpression: 'SET #status = :to',
      ConditionExpression: 'txId = :tx AND #status = :from',
      ExpressionAttributeNames: { '#status': 'status' },
      ExpressionAttributeValues: { ':tx': txId, ':from': from, ':to': to },
    });
  }

  /** Deletes the record if it belongs to txId and is in `status`; false otherwise. */
  async deleteIf(pk: string, txId: string, status: string): Promise<boolean> {
    try {
      await this.doc.send(
        new DeleteCommand({
          TableName: this.name,
          Key: { pk },
          ConditionExpression: 'txId = :tx AND #status = :status',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':tx': txId, ':status': status },
        }),
      );
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }

  private async conditionalUpdate(input: Omit<ConstructorParameters<typeof UpdateCommand>[0], 'TableName'>): Promise<boolean> {
    try {
      await this.doc.send(new UpdateCommand({ TableName: this.name, ...input }));
      return true;
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false;
      throw err;
    }
  }
}

export function holdOf(item: Record<string, unknown>, txId: string): number | undefined {
  const holds = item.holds as Record<string, number> | undefined;
  return holds?.[txId];
}
