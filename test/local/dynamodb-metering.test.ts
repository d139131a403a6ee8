// The embedded DynamoDB charges each request as AWS bills it, seen from inside dynalite: base table
// and index writes from the item before and after, failed conditional writes, reads; and it tells
// a watcher when a watched attribute changes, without a request of its own.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  BatchWriteItemCommand,
  ConditionalCheckFailedException,
  DeleteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { createTableAndWait } from '../../src/aws/tables';
import { startDynamo, type LocalDynamo, type WatchedItem } from '../../src/local/dynamodb';
import { Meter, type DynamoUnitsRow } from '../../src/local/meter';
import { unitsChargedSince } from '../support/meter';

let dynamo: LocalDynamo;
let client: DynamoDBClient;
const meter = new Meter();
meter.countKeys = true;
const TABLE = 'log';

/** Units charged since `before`, by index/key ('-' = the table, '*' = totals), once the worker's messages arrived. */
const chargedSince = (before: DynamoUnitsRow[], expectedRows: number) => unitsChargedSince(meter, before, expectedRows, (row) => `${row.index || '-'}/${row.key || '*'}`);

beforeAll(async () => {
  dynamo = await startDynamo({ meter });
  client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  await createTableAndWait(client, {
    TableName: TABLE,
    BillingMode: 'PAY_PER_REQUEST',
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    AttributeDefinitions: [
      { AttributeName: 'pk', AttributeType: 'S' },
      { AttributeName: 'listPk', AttributeType: 'S' },
      { AttributeName: 'createdAt', AttributeType: 'S' },
      { AttributeName: 'openPk', AttributeType: 'S' },
    ],
    GlobalSecondaryIndexes: [
      {
        IndexName: 'byCreated',
        KeySchema: [
          { AttributeName: 'listPk', KeyType: 'HASH' },
          { AttributeName: 'createdAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['status'] },
      },
      { IndexName: 'open', KeySchema: [{ AttributeName: 'openPk', KeyType: 'HASH' }], Projection: { ProjectionType: 'KEYS_ONLY' } },
    ],
  });
});

afterAll(async () => {
  client?.destroy();
  await dynamo?.stop();
});

/** tx-1's write charged once on the table and on each index, each by its partition key. */
const ONE_UNIT_EVERYWHERE = {
  '-/*': { w: 1, r: 0 },
  '-/tx-1': { w: 1, r: 0 },
  'byCreated/*': { w: 1, r: 0 },
  'byCreated/TX': { w: 1, r: 0 },
  'open/*': { w: 1, r: 0 },
  'open/OPEN': { w: 1, r: 0 },
};

describe('the embedded DynamoDB meter', () => {
  it('charges a put to the table and to each index the item enters, by partition key', async () => {
    const before = meter.reading().dynamodb;
    await client.send(
      new PutItemCommand({
        TableName: TABLE,
        Item: { pk: { S: 'tx-1' }, listPk: { S: 'TX' }, createdAt: { S: '2026-01-01' }, openPk: { S: 'OPEN' }, status: { S: 'PREPARING' } },
      }),
    );
    const charged = await chargedSince(before, 6);
    expect(Object.fromEntries(charged)).toEqual(ONE_UNIT_EVERYWHERE);
  });

  it('charges an update that changes nothing an index holds to the table alone, and one that removes a sparse key a delete there', async () => {
    let before = meter.reading().dynamodb;
    await client.send(new UpdateItemCommand({ TableName: TABLE, Key: { pk: { S: 'tx-1' } }, UpdateExpression: 'SET votes = :v', ExpressionAttributeValues: { ':v': { S: 'YES' } } }));
    expect(Object.fromEntries(await chargedSince(before, 2))).toEqual({ '-/*': { w: 1, r: 0 }, '-/tx-1': { w: 1, r: 0 } });

    before = meter.reading().dynamodb;
    await client.send(
      new UpdateItemCommand({
        TableName: TABLE,
        Key: { pk: { S: 'tx-1' } },
        UpdateExpression: 'SET #s = :s REMOVE openPk',
        ExpressionAttributeNames: { '#s': 'status' },
        ExpressionAttributeValues: { ':s': { S: 'COMMITTED' } },
      }),
    );
    expect(Object.fromEntries(await chargedSince(before, 6))).toEqual(ONE_UNIT_EVERYWHERE);
  });

  it('charges an item over 1 KB by its larger size, before or after', async () => {
    const before = meter.reading().dynamodb;
    await client.send(new PutItemCommand({ TableName: TABLE, Item: { pk: { S: 'big' }, payload: { S: 'x'.repeat(1500) } } }));
    await client.send(new UpdateItemCommand({ TableName: TABLE, Key: { pk: { S: 'big' } }, UpdateExpression: 'REMOVE payload' }));
    const charged = await chargedSince(before, 2);
    expect(charged.get('-/big')).toEqual({ w: 4, r: 0 });
  });

  it('charges a failed conditional write and a delete of a missing item at least one unit', async () => {
    const before = meter.reading().dynamodb;
    await expect(
      client.send(new PutItemCommand({ TableName: TABLE, Item: { pk: { S: 'tx-1' } }, ConditionExpression: 'attribute_not_exists(pk)' })),
    ).rejects.toBeInstanceOf(ConditionalCheckFailedException);
    await client.send(new DeleteItemCommand({ TableName: TABLE, Key: { pk: { S: 'nobody' } } }));
    const charged = await chargedSince(before, 3);
    expect(charged.get('-/tx-1')).toEqual({ w: 1, r: 0 });
    expect(charged.get('-/nobody')).toEqual({ w: 1, r: 0 });
    expect(charged.get('byCreated/*')).toBeUndefined();
  });

  it('charges each BatchWriteItem entry on its own', async () => {
    const before = meter.reading().dynamodb;
    await client.send(
      new BatchWriteItemCommand({
        RequestItems: { [TABLE]: [{ PutRequest: { Item: { pk: { S: 'b1' } } } }, { PutRequest: { Item: { pk: { S: 'b2' }, blob: { S: 'y'.repeat(3500) } } } }] },
      }),
    );
    const charged = await chargedSince(before, 3);
    expect(charged.get('-/*')).toEqual({ w: 1 + 4, r: 0 });
  });

  it('charges reads: half a unit per 4 KB eventually consistent, one strongly; queries by the summed size', async () => {
    const before = meter.reading().dynamodb;
    await client.send(new GetItemCommand({ TableName: TABLE, Key: { pk: { S: 'tx-1' } } }));
    await client.send(new GetItemCommand({ TableName: TABLE, Key: { pk: { S: 'missing' } }, ConsistentRead: true }));
    const out = await client.send(
      new QueryCommand({ TableName: TABLE, IndexName: 'byCreated', KeyConditionExpression: 'listPk = :l', ExpressionAttributeValues: { ':l': { S: 'TX' } } }),
    );
    // The caller did not ask for ConsumedCapacity, so it gets none.
    expect(out.ConsumedCapacity).toBeUndefined();
    const charged = await chargedSince(before, 5);
    expect(charged.get('-/tx-1')).toEqual({ w: 0, r: 0.5 });
    expect(charged.get('-/missing')).toEqual({ w: 0, r: 1 });
    expect(charged.get('byCreated/TX')).toEqual({ w: 0, r: 0.5 });
  });

  it('tells a watcher when a watched attribute changes to a watched value, once', async () => {
    const seen: WatchedItem[] = [];
    const unwatch = dynamo.watch(TABLE, 'status', ['COMMITTED', 'ABORTED'], (item) => seen.push(item));
    const put = (status: string) =>
      client.send(new PutItemCommand({ TableName: TABLE, Item: { pk: { S: 'tx-9' }, status: { S: status }, createdAt: { S: 't0' }, n: { N: '3' } } }));
    await put('PREPARING');
    await put('COMMITTED');
    await put('COMMITTED');
    await vi.waitFor(() => expect(seen).toEqual([{ pk: 'tx-9', status: 'COMMITTED', createdAt: 't0', n: '3' }]));
    unwatch();
  });
});
