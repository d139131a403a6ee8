// TransactWriteItems and TransactGetItems on the embedded DynamoDB, through the real AWS SDK v3,
// against AWS's documented behaviour (developerguide/transaction-apis.html and the API reference):
// all or nothing with one reason per action, isolation from concurrent readers, ClientRequestToken
// idempotency, the validation errors, TransactionConflict (real and injected), index entries moved
// with the items, ReturnValuesOnConditionCheckFailure, and transactional billing (2x).
import {
  ConditionalCheckFailedException,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  TransactGetItemsCommand,
  TransactWriteItemsCommand,
  TransactionCanceledException,
  UpdateItemCommand,
  DeleteItemCommand,
  type AttributeValue,
  type TransactWriteItem,
} from '@aws-sdk/client-dynamodb';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DynamoDBDocumentClient, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTableAndWait } from '../../src/aws/tables';
import { startDynamo, type LocalDynamo } from '../../src/local/dynamodb';
import { installFaults } from '../../src/local/faults';
import { Meter, type DynamoUnitsRow } from '../../src/local/meter';
import { unitsChargedSince } from '../support/meter';

const ACCOUNTS = 'tx-accounts';
const OTHER = 'tx-other';
const INDEX = 'byOwner';
const meter = new Meter();
meter.countKeys = true;
let dynamo: LocalDynamo;
let client: DynamoDBClient;

const S = (s: string): AttributeValue => ({ S: s });
const N = (n: number): AttributeValue => ({ N: String(n) });
const key = (pk: string) => ({ pk: S(pk) });

async function createTable(TableName: string, withIndex: boolean) {
  await createTableAndWait(client, {
    TableName,
    BillingMode: 'PAY_PER_REQUEST',
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }, ...(withIndex ? [{ AttributeName: 'owner', AttributeType: 'S' as const }] : [])],
    ...(withIndex ? { GlobalSecondaryIndexes: [{ IndexName: INDEX, KeySchema: [{ AttributeName: 'owner', KeyType: 'HASH' as const }], Projection: { ProjectionType: 'ALL' as const } }] } : {}),
  });
}

async function get(pk: string, TableName = ACCOUNTS) {
  return (await client.send(new GetItemCommand({ TableName, Key: key(pk), ConsistentRead: true }))).Item;
}

async function put(pk: string, attributes: Record<string, AttributeValue> = {}, TableName = ACCOUNTS) {
  await client.send(new PutItemCommand({ TableName, Item: { pk: S(pk), ...attributes } }));
}

async function owners(owner: string): Promise<string[]> {
  const out = await client.send(new QueryCommand({ TableName: ACCOUNTS, IndexName: INDEX, KeyConditionExpression: '#o = :o', ExpressionAttributeNames: { '#o': 'owner' }, ExpressionAttributeValues: { ':o': S(owner) } }));
  return (out.Items ?? []).map((i) => i.pk!.S!).sort();
}

/** The error a promise rejects with (and a failure if it resolves). */
async function rejection<E = Error>(promise: Promise<unknown>): Promise<E> {
  try {
    await promise;
  } catch (err) {
    return err as E;
  }
  throw new Error('expected the request to fail, and it succeeded');
}

function transfer(from: string, to: string, amount: number): TransactWriteItem[] {
  return [
    { Update: { TableName: ACCOUNTS, Key: key(from), UpdateExpression: 'SET balance = balance - :n', ConditionExpression: 'balance >= :n', ExpressionAttributeValues: { ':n': N(amount) } } },
    { Update: { TableName: ACCOUNTS, Key: key(to), UpdateExpression: 'SET balance = balance + :n', ExpressionAttributeValues: { ':n': N(amount) } } },
  ];
}

beforeAll(async () => {
  dynamo = await startDynamo({ meter });
  client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  await createTable(ACCOUNTS, true);
  await createTable(OTHER, false);
});

afterAll(async () => {
  client.destroy();
  await dynamo.stop();
});

describe('TransactWriteItems', () => {
  it('applies Put, Update, Delete and ConditionCheck across two tables together, moving index entries', async () => {
    await put('a1', { balance: N(10), owner: S('ann') });
    await put('gone', { owner: S('ann') });
    await put('flag', { open: { BOOL: true } }, OTHER);
    await client.send(
      new TransactWriteItemsCommand({
        TransactItems: [
          { ConditionCheck: { TableName: OTHER, Key: key('flag'), ConditionExpression: '#o = :t', ExpressionAttributeNames: { '#o': 'open' }, ExpressionAttributeValues: { ':t': { BOOL: true } } } },
          { Update: { TableName: ACCOUNTS, Key: key('a1'), UpdateExpression: 'SET balance = balance + :n, #o = :b', ExpressionAttributeNames: { '#o': 'owner' }, ExpressionAttributeValues: { ':n': N(5), ':b': S('bob') } } },
          { Put: { TableName: ACCOUNTS, Item: { pk: S('a2'), balance: N(1), owner: S('bob') }, ConditionExpression: 'attribute_not_exists(pk)' } },
          { Delete: { TableName: ACCOUNTS, Key: key('gone') } },
        ],
      }),
    );
    expect(await get('a1')).toEqual({ pk: S('a1'), balance: N(15), owner: S('bob') });
    expect(await get('a2')).toEqual({ pk: S('a2'), balance: N(1), owner: S('bob') });
    expect(await get('gone')).toBeUndefined();
    expect(await get('flag', OTHER)).toEqual({ pk: S('flag'), open: { BOOL: true } });
    expect(await owners('ann')).toEqual([]);
    expect(await owners('bob')).toEqual(['a1', 'a2']);
  });

  it('applies nothing when one ConditionCheck fails, with one reason per action and the item when asked', async () => {
    await put('c1', { balance: N(100), owner: S('cid') });
    await put('c2', { balance: N(100) });
    await put('lock', { holder: S('someone-else') }, OTHER);
    const err = await rejection<TransactionCanceledException>(
      client.send(
        new TransactWriteItemsCommand({
          TransactItems: [
            ...transfer('c1', 'c2', 30),
            { ConditionCheck: { TableName: OTHER, Key: key('lock'), ConditionExpression: 'holder = :me', ExpressionAttributeValues: { ':me': S('me') }, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' } },
            { Put: { TableName: OTHER, Item: { pk: S('new') } } },
          ],
        }),
      ),
    );
    expect(err).toBeInstanceOf(TransactionCanceledException);
    expect(err.message).toContain('[None, None, ConditionalCheckFailed, None]');
    expect(err.CancellationReasons).toEqual([
      { Code: 'None' },
      { Code: 'None' },
      { Code: 'ConditionalCheckFailed', Message: 'The conditional request failed', Item: { pk: S('lock'), holder: S('someone-else') } },
      { Code: 'None' },
    ]);
    expect(await get('c1')).toEqual({ pk: S('c1'), balance: N(100), owner: S('cid') });
    expect(await get('c2')).toEqual({ pk: S('c2'), balance: N(100) });
    expect(await get('new', OTHER)).toBeUndefined();
    expect(await owners('cid')).toEqual(['c1']);
  });

  it('reports a failed Update condition without the item unless asked, and an invalid update as ValidationError', async () => {
    await put('d1', { balance: N(5), name: S('x') });
    const failed = await rejection<TransactionCanceledException>(client.send(new TransactWriteItemsCommand({ TransactItems: transfer('d1', 'c2', 50) })));
    expect(failed.CancellationReasons).toEqual([{ Code: 'ConditionalCheckFailed', Message: 'The conditional request failed' }, { Code: 'None' }]);
    const invalid = await rejection<TransactionCanceledException>(
      client.send(new TransactWriteItemsCommand({ TransactItems: [{ Update: { TableName: ACCOUNTS, Key: key('d1'), UpdateExpression: 'SET balance = #n + :one', ExpressionAttributeNames: { '#n': 'name' }, ExpressionAttributeValues: { ':one': N(1) } } }] })),
    );
    expect(invalid.CancellationReasons?.[0]?.Code).toBe('ValidationError');
    expect(await get('d1')).toEqual({ pk: S('d1'), balance: N(5), name: S('x') });
  });

  it('is served to the document client (TransactWriteCommand) too', async () => {
    const doc = DynamoDBDocumentClient.from(client);
    await doc.send(
      new TransactWriteCommand({
        TransactItems: [
          { Put: { TableName: ACCOUNTS, Item: { pk: 'doc-1', balance: 7 } } },
          { Put: { TableName: ACCOUNTS, Item: { pk: 'doc-2', balance: 3 } } },
        ],
      }),
    );
    expect(await get('doc-1')).toEqual({ pk: S('doc-1'), balance: N(7) });
    expect(await get('doc-2')).toEqual({ pk: S('doc-2'), balance: N(3) });
  });

  describe('validation', () => {
    const send = (input: ConstructorParameters<typeof TransactWriteItemsCommand>[0]) => rejection<Error>(client.send(new TransactWriteItemsCommand(input)));

    it('refuses two actions on one item, naming the rule, and writes nothing', async () => {
      const err = await send({
        TransactItems: [
          { Put: { TableName: ACCOUNTS, Item: { pk: S('dup'), v: N(1) } } },
          { ConditionCheck: { TableName: ACCOUNTS, Key: key('dup'), ConditionExpression: 'attribute_not_exists(pk)' } },
        ],
      });
      expect(err.name).toBe('ValidationException');
      expect(err.message).toBe('Transaction request cannot include multiple operations on one item');
      expect(await get('dup')).toBeUndefined();
    });

    it('refuses an empty request and one of more than 100 actions', async () => {
      const empty = await send({ TransactItems: [] });
      expect(empty.name).toBe('ValidationException');
      expect(empty.message).toMatch(/transactItems.*greater than or equal to 1/);
      const many = await send({ TransactItems: Array.from({ length: 101 }, (_, i) => ({ Put: { TableName: ACCOUNTS, Item: { pk: S(`many-${i}`) } } })) });
      expect(many.name).toBe('ValidationException');
      expect(many.message).toMatch(/transactItems.*less than or equal to 100/);
      expect(await get('many-0')).toBeUndefined();
      // 100 is allowed.
      await client.send(new TransactWriteItemsCommand({ TransactItems: Array.from({ length: 100 }, (_, i) => ({ Put: { TableName: ACCOUNTS, Item: { pk: S(`hundred-${i}`) } } })) }));
      expect(await get('hundred-99')).toEqual({ pk: S('hundred-99') });
    });

    it('refuses an action with two kinds, a ConditionCheck without a condition, a key off the schema, a long token and a missing table', async () => {
      const twoKinds = await send({ TransactItems: [{ Put: { TableName: ACCOUNTS, Item: { pk: S('k') } }, Delete: { TableName: ACCOUNTS, Key: key('k') } }] });
      expect(twoKinds.message).toBe('TransactItems can only contain one of Check, Put, Update or Delete');
      const noCondition = await send({ TransactItems: [{ ConditionCheck: { TableName: ACCOUNTS, Key: key('k'), ConditionExpression: undefined as unknown as string } }] });
      expect(noCondition.name).toBe('ValidationException');
      const badKey = await send({ TransactItems: [{ Delete: { TableName: ACCOUNTS, Key: { id: S('k') } } }] });
      expect(badKey.name).toBe('ValidationException');
      const longToken = await send({ ClientRequestToken: 'x'.repeat(37), TransactItems: [{ Put: { TableName: ACCOUNTS, Item: { pk: S('k') } } }] });
      expect(longToken.name).toBe('ValidationException');
      const noTable = await send({ TransactItems: [{ Put: { TableName: 'no-such-table', Item: { pk: S('k') } } }] });
      expect(noTable.name).toBe('ResourceNotFoundException');
      expect(await get('k')).toBeUndefined();
    });
  });

  describe('ClientRequestToken', () => {
    it('applies a repeated request once, and refuses another request under the same token', async () => {
      await put('i1', { balance: N(100) });
      await put('i2', { balance: N(0) });
      const request = { ClientRequestToken: 'token-1', TransactItems: transfer('i1', 'i2', 10) };
      await client.send(new TransactWriteItemsCommand(request));
      await client.send(new TransactWriteItemsCommand(request));
      await client.send(new TransactWriteItemsCommand(request));
      expect(await get('i1')).toEqual({ pk: S('i1'), balance: N(90) });
      expect(await get('i2')).toEqual({ pk: S('i2'), balance: N(10) });
      const mismatch = await rejection(client.send(new TransactWriteItemsCommand({ ClientRequestToken: 'token-1', TransactItems: transfer('i1', 'i2', 11) })));
      expect(mismatch.name).toBe('IdempotentParameterMismatchException');
      expect(await get('i1')).toEqual({ pk: S('i1'), balance: N(90) });
    });

    it('applies the same request sent several times at once exactly once (the SDK retries TransactionInProgressException)', async () => {
      await put('p1', { balance: N(100) });
      await put('p2', { balance: N(0) });
      const request = { ClientRequestToken: 'token-parallel', TransactItems: transfer('p1', 'p2', 10) };
      await Promise.all(Array.from({ length: 6 }, () => client.send(new TransactWriteItemsCommand(request))));
      expect(await get('p1')).toEqual({ pk: S('p1'), balance: N(90) });
      expect(await get('p2')).toEqual({ pk: S('p2'), balance: N(10) });
    });

    it('keeps the token on disk: after a restart the same request still applies nothing', async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'dtc-ddb-token-'));
      const start = async () => {
        const d = await startDynamo({ path: dir });
        return { d, c: new DynamoDBClient({ endpoint: d.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }) };
      };
      try {
        let { d, c } = await start();
        await createTableAndWait(c, { TableName: ACCOUNTS, BillingMode: 'PAY_PER_REQUEST', KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }] });
        const request = { ClientRequestToken: 'token-disk', TransactItems: [{ Update: { TableName: ACCOUNTS, Key: key('counter'), UpdateExpression: 'ADD n :one', ExpressionAttributeValues: { ':one': N(1) } } }] };
        await c.send(new TransactWriteItemsCommand(request));
        c.destroy();
        await d.stop();
        ({ d, c } = await start());
        try {
          await c.send(new TransactWriteItemsCommand(request));
          expect((await c.send(new GetItemCommand({ TableName: ACCOUNTS, Key: key('counter'), ConsistentRead: true }))).Item).toEqual({ pk: S('counter'), n: N(1) });
          const mismatch = await rejection(c.send(new TransactWriteItemsCommand({ ...request, TransactItems: [{ Put: { TableName: ACCOUNTS, Item: { pk: S('other') } } }] })));
          expect(mismatch.name).toBe('IdempotentParameterMismatchException');
        } finally {
          c.destroy();
          await d.stop();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('keeps no token for a canceled transaction: the same request runs again once it can', async () => {
      await put('r1', { balance: N(5) });
      await put('r2', { balance: N(0) });
      const request = { ClientRequestToken: 'token-retry', TransactItems: transfer('r1', 'r2', 10) };
      expect((await rejection(client.send(new TransactWriteItemsCommand(request)))).name).toBe('TransactionCanceledException');
      await put('r1', { balance: N(50) });
      await client.send(new TransactWriteItemsCommand(request));
      await client.send(new TransactWriteItemsCommand(request));
      expect(await get('r1')).toEqual({ pk: S('r1'), balance: N(40) });
    });
  });

  it('cancels with TransactionConflict a transaction that meets an item another in-flight transaction holds', async () => {
    await put('hot', { n: N(0) });
    const increment = (i: number): TransactWriteItem[] => [
      { Update: { TableName: ACCOUNTS, Key: key('hot'), UpdateExpression: 'ADD n :one', ExpressionAttributeValues: { ':one': N(1) } } },
      { Put: { TableName: OTHER, Item: { pk: S(`conflict-${i}`) } } },
    ];
    let applied = 0;
    let conflicts = 0;
    let i = 0;
    // Rounds of concurrent transactions on one item until some met one another (bounded).
    for (let round = 0; round < 50 && conflicts === 0; round++) {
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => client.send(new TransactWriteItemsCommand({ TransactItems: increment(i++) }))));
      for (const r of results) {
        if (r.status === 'fulfilled') applied++;
        else {
          const err = r.reason as TransactionCanceledException;
          expect(err.name).toBe('TransactionCanceledException');
          expect(err.CancellationReasons).toEqual([{ Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' }, { Code: 'None' }]);
          conflicts++;
        }
      }
    }
    expect(conflicts).toBeGreaterThan(0);
    expect(applied).toBeGreaterThan(0);
    // Exactly the transactions that succeeded were applied, each whole.
    expect(await get('hot')).toEqual({ pk: S('hot'), n: N(applied) });
    const written = await Promise.all(Array.from({ length: i }, (_, k) => get(`conflict-${k}`, OTHER)));
    expect(written.filter(Boolean)).toHaveLength(applied);
  });

  it('never shows a concurrent reader half of a transaction (on disk, as `npm start` keeps it)', async () => {
    // On disk, LevelDB reads go through I/O threads and interleave with writes; in memory they do not.
    const dir = await mkdtemp(path.join(tmpdir(), 'dtc-ddb-iso-'));
    const disk = await startDynamo({ path: dir });
    const c = new DynamoDBClient({ endpoint: disk.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    try {
      await createTableAndWait(c, { TableName: ACCOUNTS, BillingMode: 'PAY_PER_REQUEST', KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }] });
      const accounts = Array.from({ length: 6 }, (_, i) => `iso-${i}`);
      await c.send(new TransactWriteItemsCommand({ TransactItems: accounts.map((pk) => ({ Put: { TableName: ACCOUNTS, Item: { pk: S(pk), balance: N(100) } } })) }));
      const total = accounts.length * 100;
      // Until the readers have seen 30 whole views while transfers ran (bounded by 30 s).
      const READS = 30;
      const deadline = Date.now() + 30_000;
      let transfers = 0;
      let reads = 0;
      const running = () => reads < READS && Date.now() < deadline;
      const reader = async () => {
        while (running()) {
          const out = await c
            .send(new TransactGetItemsCommand({ TransactItems: accounts.map((pk) => ({ Get: { TableName: ACCOUNTS, Key: key(pk) } })) }))
            .catch((err: Error) => {
              // A read that meets an in-flight transaction is canceled, as on AWS; it never sees half.
              expect(err.name).toBe('TransactionCanceledException');
              return undefined;
            });
          if (!out) continue;
          expect(out.Responses!.reduce((sum, r) => sum + Number(r.Item!.balance!.N), 0)).toBe(total);
          reads++;
        }
      };
      const writer = async (w: number) => {
        for (let k = 0; running(); k++) {
          const from = accounts[(w + k) % accounts.length]!;
          const to = accounts[(w + 2 * k + 1) % accounts.length]!;
          if (from === to) continue;
          try {
            await c.send(new TransactWriteItemsCommand({ TransactItems: transfer(from, to, 1 + ((w * 7 + k) % 20)) }));
            transfers++;
          } catch (err) {
            expect((err as Error).name).toBe('TransactionCanceledException');
          }
        }
      };
      await Promise.all([...Array.from({ length: 8 }, (_, w) => writer(w)), reader(), reader()]);
      expect(reads).toBeGreaterThanOrEqual(READS);
      expect(transfers).toBeGreaterThan(10);
      const final = await c.send(new TransactGetItemsCommand({ TransactItems: accounts.map((pk) => ({ Get: { TableName: ACCOUNTS, Key: key(pk) } })) }));
      expect(final.Responses!.reduce((sum, r) => sum + Number(r.Item!.balance!.N), 0)).toBe(total);
    } finally {
      c.destroy();
      await disk.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is canceled with TransactionConflict by the fault settings, and then writes nothing', async () => {
    const faults = installFaults({ seed: 3, 'dynamodb.transactionConflict': 1 });
    faults.enabled = true;
    try {
      const err = await rejection<TransactionCanceledException>(
        client.send(new TransactWriteItemsCommand({ TransactItems: [{ Put: { TableName: ACCOUNTS, Item: { pk: S('faulted-1') } } }, { Put: { TableName: ACCOUNTS, Item: { pk: S('faulted-2') } } }] })),
      );
      expect(err).toBeInstanceOf(TransactionCanceledException);
      expect(err.CancellationReasons?.map((r) => r.Code).sort()).toEqual(['None', 'TransactionConflict']);
      expect(faults.stats()['dynamodb.transactionConflict']).toBe(1);
    } finally {
      faults.enabled = false;
    }
    expect(await get('faulted-1')).toBeUndefined();
    expect(await get('faulted-2')).toBeUndefined();
  });
});

describe('TransactGetItems', () => {
  it('reads items of several tables at once, with projections, and nothing for a missing item', async () => {
    await put('g1', { balance: N(3), owner: S('gail'), extra: S('x') });
    await put('g2', { note: S('hello') }, OTHER);
    const out = await client.send(
      new TransactGetItemsCommand({
        TransactItems: [
          { Get: { TableName: ACCOUNTS, Key: key('g1'), ProjectionExpression: 'pk, balance' } },
          { Get: { TableName: OTHER, Key: key('g2') } },
          { Get: { TableName: OTHER, Key: key('g-missing') } },
        ],
      }),
    );
    expect(out.Responses).toEqual([{ Item: { pk: S('g1'), balance: N(3) } }, { Item: { pk: S('g2'), note: S('hello') } }, {}]);
  });

  it('refuses two gets of one item and more than 100 gets', async () => {
    const dup = await rejection(client.send(new TransactGetItemsCommand({ TransactItems: [{ Get: { TableName: ACCOUNTS, Key: key('g1') } }, { Get: { TableName: ACCOUNTS, Key: key('g1') } }] })));
    expect(dup.name).toBe('ValidationException');
    const many = await rejection(client.send(new TransactGetItemsCommand({ TransactItems: Array.from({ length: 101 }, (_, i) => ({ Get: { TableName: ACCOUNTS, Key: key(`g-${i}`) } })) })));
    expect(many.name).toBe('ValidationException');
  });
});

describe('ReturnValuesOnConditionCheckFailure on single writes', () => {
  it('returns the item in the ConditionalCheckFailedException of PutItem, UpdateItem and DeleteItem when asked', async () => {
    await put('rv', { v: N(1) });
    const condition = { ConditionExpression: 'v = :two', ExpressionAttributeValues: { ':two': N(2) } };
    const failures = [
      await rejection<ConditionalCheckFailedException>(client.send(new PutItemCommand({ TableName: ACCOUNTS, Item: { pk: S('rv'), v: N(9) }, ...condition, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' }))),
      await rejection<ConditionalCheckFailedException>(client.send(new UpdateItemCommand({ TableName: ACCOUNTS, Key: key('rv'), UpdateExpression: 'SET v = :nine', ...condition, ExpressionAttributeValues: { ':two': N(2), ':nine': N(9) }, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' }))),
      await rejection<ConditionalCheckFailedException>(client.send(new DeleteItemCommand({ TableName: ACCOUNTS, Key: key('rv'), ...condition, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' }))),
    ];
    for (const f of failures) {
      expect(f).toBeInstanceOf(ConditionalCheckFailedException);
      expect(f.Item).toEqual({ pk: S('rv'), v: N(1) });
    }
    const plain = await rejection<ConditionalCheckFailedException>(client.send(new DeleteItemCommand({ TableName: ACCOUNTS, Key: key('rv'), ...condition })));
    expect(plain.Item).toBeUndefined();
  });
});

describe('billing', () => {
  /** Units charged since `before` per "table/index/key" (totals left out), once at least `rows` rows arrived. */
  const chargedSince = (before: DynamoUnitsRow[], rows: number) =>
    unitsChargedSince(meter, before, rows, (row) => (row.key === '' ? undefined : `${row.table}/${row.index || '-'}/${row.key}`));

  /** Wait until the charges of the writes that set up a test have arrived (they travel apart from the responses). */
  async function settled(...items: [table: string, key: string][]) {
    await vi.waitFor(() => {
      for (const [table, key] of items) expect(meter.reading().dynamodb.find((r) => r.table === table && r.index === '' && r.key === key)?.writeUnits).toBeGreaterThan(0);
    });
  }

  it('charges twice the write units of each item a transaction writes or checks, index writes once', async () => {
    await put('b1', { balance: N(10) });
    await put('b2', { balance: N(10), owner: S('bea') });
    await put('b3', { ok: { BOOL: true } }, OTHER);
    await settled([ACCOUNTS, 'b1'], [ACCOUNTS, 'b2'], [OTHER, 'b3']);
    const before = meter.reading().dynamodb;
    await client.send(
      new TransactWriteItemsCommand({
        TransactItems: [
          ...transfer('b1', 'b2', 4),
          { ConditionCheck: { TableName: OTHER, Key: key('b3'), ConditionExpression: 'attribute_exists(ok)' } },
        ],
      }),
    );
    const charged = await chargedSince(before, 4);
    expect(Object.fromEntries(charged)).toEqual({
      [`${ACCOUNTS}/-/b1`]: { w: 2, r: 0 },
      [`${ACCOUNTS}/-/b2`]: { w: 2, r: 0 },
      // b2's index entry changes its projected balance under the same key: one update.
      [`${ACCOUNTS}/${INDEX}/bea`]: { w: 1, r: 0 },
      [`${OTHER}/-/b3`]: { w: 2, r: 0 },
    });
  });

  it('charges twice the consistent read units of each item TransactGetItems reads', async () => {
    await put('rb1', { v: N(1) });
    await put('rb2', { v: S('y'.repeat(5000)) });
    await settled([ACCOUNTS, 'rb1'], [ACCOUNTS, 'rb2']);
    const before = meter.reading().dynamodb;
    await client.send(new TransactGetItemsCommand({ TransactItems: [{ Get: { TableName: ACCOUNTS, Key: key('rb1') } }, { Get: { TableName: ACCOUNTS, Key: key('rb2') } }] }));
    const charged = await chargedSince(before, 2);
    expect(Object.fromEntries(charged)).toEqual({
      [`${ACCOUNTS}/-/rb1`]: { w: 0, r: 2 },
      // 5 KB: two 4 KB steps, twice.
      [`${ACCOUNTS}/-/rb2`]: { w: 0, r: 4 },
    });
  });
});
