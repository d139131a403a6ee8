// Time to live on the embedded DynamoDB, through the real SDK: UpdateTimeToLive/DescribeTimeToLive
// as AWS answers them, a reaper that deletes expired items (epoch seconds in a Number attribute)
// with their index entries and leaves everything else, and the provisioner enabling the TTL the
// CDK template declares.
import {
  CreateTableCommand,
  DeleteTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  UpdateTimeToLiveCommand,
  type AttributeValue,
} from '@aws-sdk/client-dynamodb';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startDynamo, type LocalDynamo } from '../../src/local/dynamodb';
import { Meter } from '../../src/local/meter';
import { startLocalAws } from '../support/aws';

const TABLE = 'ttl-items';
const INDEX = 'byGroup';
const REAPER_MS = 100;
const meter = new Meter();
let dynamo: LocalDynamo;
let client: DynamoDBClient;

const S = (s: string): AttributeValue => ({ S: s });
const nowSeconds = () => Math.floor(Date.now() / 1000);

async function createTable() {
  await client.send(
    new CreateTableCommand({
      TableName: TABLE,
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'grp', AttributeType: 'S' },
      ],
      GlobalSecondaryIndexes: [{ IndexName: INDEX, KeySchema: [{ AttributeName: 'grp', KeyType: 'HASH' }], Projection: { ProjectionType: 'KEYS_ONLY' } }],
    }),
  );
}

const describeTtl = async (TableName = TABLE) => (await client.send(new DescribeTimeToLiveCommand({ TableName }))).TimeToLiveDescription;
const put = (pk: string, attributes: Record<string, AttributeValue>) => client.send(new PutItemCommand({ TableName: TABLE, Item: { pk: S(pk), grp: S('g'), ...attributes } }));
const exists = async (pk: string) => Boolean((await client.send(new GetItemCommand({ TableName: TABLE, Key: { pk: S(pk) }, ConsistentRead: true }))).Item);
const indexed = async () =>
  ((await client.send(new QueryCommand({ TableName: TABLE, IndexName: INDEX, KeyConditionExpression: 'grp = :g', ExpressionAttributeValues: { ':g': S('g') } }))).Items ?? []).map((i) => i.pk!.S!).sort();

beforeAll(async () => {
  dynamo = await startDynamo({ meter, ttlReaperMs: REAPER_MS });
  client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  await createTable();
});

afterAll(async () => {
  client.destroy();
  await dynamo.stop();
});

describe('UpdateTimeToLive and DescribeTimeToLive', () => {
  it('starts disabled, enables, refuses to enable twice or on another attribute, and disables', async () => {
    expect(await describeTtl()).toEqual({ TimeToLiveStatus: 'DISABLED' });
    const enabled = await client.send(new UpdateTimeToLiveCommand({ TableName: TABLE, TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true } }));
    expect(enabled.TimeToLiveSpecification).toEqual({ AttributeName: 'expiresAt', Enabled: true });
    expect(await describeTtl()).toEqual({ TimeToLiveStatus: 'ENABLED', AttributeName: 'expiresAt' });

    const again = client.send(new UpdateTimeToLiveCommand({ TableName: TABLE, TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true } }));
    await expect(again).rejects.toMatchObject({ name: 'ValidationException', message: 'TimeToLive is already enabled' });
    const other = client.send(new UpdateTimeToLiveCommand({ TableName: TABLE, TimeToLiveSpecification: { AttributeName: 'other', Enabled: true } }));
    await expect(other).rejects.toMatchObject({ name: 'ValidationException', message: 'TimeToLive is active on a different AttributeName: current AttributeName is expiresAt' });
    const missing = client.send(new DescribeTimeToLiveCommand({ TableName: 'no-such-table' }));
    await expect(missing).rejects.toMatchObject({ name: 'ResourceNotFoundException' });
  });

  it('forgets the setting when the table is deleted and created again', async () => {
    const name = 'ttl-recreated';
    const create = () => client.send(new CreateTableCommand({ TableName: name, BillingMode: 'PAY_PER_REQUEST', KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }] }));
    await create();
    await client.send(new UpdateTimeToLiveCommand({ TableName: name, TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true } }));
    expect(await describeTtl(name)).toEqual({ TimeToLiveStatus: 'ENABLED', AttributeName: 'ttl' });
    await client.send(new DeleteTableCommand({ TableName: name }));
    // dynalite's CreationDateTime has a resolution of one second.
    await vi.waitFor(async () => {
      await create();
    });
    expect(await describeTtl(name)).toEqual({ TimeToLiveStatus: 'DISABLED' });
  });
});

describe('the reaper', () => {
  it('deletes expired items with their index entries, free of charge, and keeps the rest', async () => {
    const baseUnits = () => meter.reading().dynamodb.find((r) => r.table === TABLE && r.index === '' && r.key === '')?.writeUnits ?? 0;
    const unitsBefore = baseUnits();
    await put('expired', { expiresAt: { N: String(nowSeconds() - 10) } });
    await put('expiring', { expiresAt: { N: String(nowSeconds() + 1) } });
    await put('future', { expiresAt: { N: String(nowSeconds() + 3600) } });
    await put('no-ttl', {});
    await put('not-a-number', { expiresAt: S(String(nowSeconds() - 10)) });
    // More than five years in the past: AWS keeps it.
    await put('ancient', { expiresAt: { N: String(nowSeconds() - 6 * 365 * 86_400) } });
    // Six new small items: one write unit each, charged once the worker's messages arrive.
    await vi.waitFor(() => expect(baseUnits()).toBe(unitsBefore + 6));

    await vi.waitFor(async () => expect(await exists('expired')).toBe(false), { timeout: 5000 });
    await vi.waitFor(async () => expect(await exists('expiring')).toBe(false), { timeout: 5000 });
    expect(await indexed()).toEqual(['ancient', 'future', 'no-ttl', 'not-a-number']);
    for (const pk of ['future', 'no-ttl', 'not-a-number', 'ancient']) expect(await exists(pk)).toBe(true);
    expect(baseUnits()).toBe(unitsBefore + 6);
  });

  it('keeps an item whose expiry a write pushed into the future', async () => {
    await put('renewed', { expiresAt: { N: String(nowSeconds() + 1) } });
    await put('renewed', { expiresAt: { N: String(nowSeconds() + 3600) } });
    await put('marker', { expiresAt: { N: String(nowSeconds() + 1) } });
    await vi.waitFor(async () => expect(await exists('marker')).toBe(false), { timeout: 5000 });
    expect(await exists('renewed')).toBe(true);
  });

  it('stops deleting once TTL is disabled', async () => {
    await client.send(new UpdateTimeToLiveCommand({ TableName: TABLE, TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: false } }));
    expect(await describeTtl()).toEqual({ TimeToLiveStatus: 'DISABLED' });
    await put('kept', { expiresAt: { N: String(nowSeconds() - 10) } });
    // A sibling table with TTL on shows the reaper has run since (several passes).
    const sibling = 'ttl-sibling';
    await client.send(new CreateTableCommand({ TableName: sibling, BillingMode: 'PAY_PER_REQUEST', KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }] }));
    await client.send(new UpdateTimeToLiveCommand({ TableName: sibling, TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true } }));
    for (let i = 0; i < 3; i++) {
      await client.send(new PutItemCommand({ TableName: sibling, Item: { pk: S(`s-${i}`), expiresAt: { N: String(nowSeconds() - 10) } } }));
      await vi.waitFor(async () => expect((await client.send(new GetItemCommand({ TableName: sibling, Key: { pk: S(`s-${i}`) }, ConsistentRead: true }))).Item).toBeUndefined(), { timeout: 5000 });
    }
    expect(await exists('kept')).toBe(true);
  });
});

it('reaps items stored before TTL was enabled, and items stored before a restart', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dtc-ddb-ttl-'));
  const start = async () => {
    const d = await startDynamo({ path: dir, ttlReaperMs: REAPER_MS });
    const c = new DynamoDBClient({ endpoint: d.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    const present = async (pk: string) => Boolean((await c.send(new GetItemCommand({ TableName: 'ttl-disk', Key: { pk: S(pk) }, ConsistentRead: true }))).Item);
    return { d, c, present, stop: async () => (c.destroy(), await d.stop()) };
  };
  try {
    let s = await start();
    await s.c.send(new CreateTableCommand({ TableName: 'ttl-disk', BillingMode: 'PAY_PER_REQUEST', KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }] }));
    await s.c.send(new PutItemCommand({ TableName: 'ttl-disk', Item: { pk: S('before-enabled'), ttl: { N: String(nowSeconds() - 10) } } }));
    await s.c.send(new UpdateTimeToLiveCommand({ TableName: 'ttl-disk', TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true } }));
    await vi.waitFor(async () => expect(await s.present('before-enabled')).toBe(false), { timeout: 5000 });
    // Due in two seconds, and the process stops before then.
    await s.c.send(new PutItemCommand({ TableName: 'ttl-disk', Item: { pk: S('before-restart'), ttl: { N: String(nowSeconds() + 2) } } }));
    await s.stop();
    s = await start();
    try {
      expect((await s.c.send(new DescribeTimeToLiveCommand({ TableName: 'ttl-disk' }))).TimeToLiveDescription).toEqual({ TimeToLiveStatus: 'ENABLED', AttributeName: 'ttl' });
      await vi.waitFor(async () => expect(await s.present('before-restart')).toBe(false), { timeout: 8000 });
    } finally {
      await s.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it("the provisioner enables the TTL of the template's tables (the log and the lock table)", async () => {
  const aws = await startLocalAws({ tables: ['log', 'locks'] });
  try {
    for (const table of [aws.tables.log, aws.tables.locks]) {
      const out = await aws.dynamodb.send(new DescribeTimeToLiveCommand({ TableName: table }));
      expect(out.TimeToLiveDescription).toEqual({ TimeToLiveStatus: 'ENABLED', AttributeName: 'expiresAt' });
    }
  } finally {
    await aws.stop();
  }
});
