// Writes per second on the embedded DynamoDB (dynalite with the transactions added in
// src/local/dynamodb-transactions.mjs): a 2-item TransactWriteItems (a transfer between two
// accounts, each a conditional update) against single conditional writes (PutItem of a new item,
// UpdateItem of an account), each with a fixed number of requests in flight.
// Usage: npm run bench:dynamodb -- [--in-flight 16] [--seconds 10] [--warmup 1] [--accounts 10000] [--memory] [--json FILE]
//
// The server runs on its worker thread as in `npm start` (on disk unless --memory); the clients are
// the real SDK on the main thread. A canceled transfer (two transfers meeting on an account:
// TransactionConflict; or too little money) counts as canceled, not as done; with many accounts
// they are rare. `--json FILE` writes the result as JSON.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DynamoDBClient, PutItemCommand, TransactWriteItemsCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { createTableAndWait } from '../src/aws/tables';
import { percentile } from '../src/console/series';
import { startDynamo } from '../src/local/dynamodb';

const { values } = parseArgs({
  options: {
    'in-flight': { type: 'string', default: '16' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '1' },
    accounts: { type: 'string', default: '10000' },
    memory: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const inFlight = Number(values['in-flight']);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const accounts = Number(values.accounts);
if (![inFlight, seconds, warmup, accounts].every((v) => Number.isFinite(v) && v >= 0) || inFlight < 1 || seconds <= 0 || accounts < 2) {
  throw new Error(`--in-flight >= 1, --seconds > 0, --warmup >= 0, --accounts >= 2; got ${values['in-flight']}, ${values.seconds}, ${values.warmup}, ${values.accounts}`);
}
const TABLE = 'bench-accounts';
const BALANCE = 1_000_000;
/** Accounts written per seeding transaction (the API's limit is 100). */
const SEED_BATCH = 100;

const dir = values.memory ? undefined : await mkdtemp(path.join(tmpdir(), 'dtc-bench-ddb-'));
const dynamo = await startDynamo(dir ? { path: dir } : {});
const client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1 });

await createTableAndWait(client, { TableName: TABLE, BillingMode: 'PAY_PER_REQUEST', KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }], AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }] });
for (let i = 0; i < accounts; i += SEED_BATCH) {
  const ids = Array.from({ length: Math.min(SEED_BATCH, accounts - i) }, (_, k) => i + k);
  await client.send(new TransactWriteItemsCommand({ TransactItems: ids.map((id) => ({ Put: { TableName: TABLE, Item: { pk: { S: `acct-${id}` }, balance: { N: String(BALANCE) } } } })) }));
}

const account = () => `acct-${Math.floor(Math.random() * accounts)}`;
let putSeq = 0;

/** Each returns true when done, false when canceled (its condition failed or it met another). */
const operations: Record<string, () => Promise<boolean>> = {
  'PutItem (conditional, new item)': async () => {
    await client.send(new PutItemCommand({ TableName: TABLE, Item: { pk: { S: `new-${++putSeq}` }, balance: { N: '1' } }, ConditionExpression: 'attribute_not_exists(pk)' }));
    return true;
  },
  'UpdateItem (conditional)': async () => {
    await client.send(
      new UpdateItemCommand({ TableName: TABLE, Key: { pk: { S: account() } }, UpdateExpression: 'SET balance = balance - :n', ConditionExpression: 'balance >= :n', ExpressionAttributeValues: { ':n': { N: '1' } } }),
    );
    return true;
  },
  'TransactWriteItems (2 conditional updates)': async () => {
    const from = account();
    let to = account();
    while (to === from) to = account();
    try {
      await client.send(
        new TransactWriteItemsCommand({
          TransactItems: [
            { Update: { TableName: TABLE, Key: { pk: { S: from } }, UpdateExpression: 'SET balance = balance - :n', ConditionExpression: 'balance >= :n', ExpressionAttributeValues: { ':n': { N: '1' } } } },
            { Update: { TableName: TABLE, Key: { pk: { S: to } }, UpdateExpression: 'SET balance = balance + :n', ConditionExpression: 'attribute_exists(pk)', ExpressionAttributeValues: { ':n': { N: '1' } } } },
          ],
        }),
      );
      return true;
    } catch (err) {
      if ((err as Error).name === 'TransactionCanceledException') return false;
      throw err;
    }
  },
};

interface Result {
  operation: string;
  perSecond: number;
  done: number;
  canceled: number;
  p50Ms: number;
  p99Ms: number;
}

async function measure(operation: string, run: () => Promise<boolean>): Promise<Result> {
  const latencies: number[] = [];
  let done = 0;
  let canceled = 0;
  const warmupEnd = performance.now() + warmup * 1000;
  const end = warmupEnd + seconds * 1000;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (let started = performance.now(); started < end; started = performance.now()) {
        const ok = await run();
        const finished = performance.now();
        if (started < warmupEnd || finished > end) continue;
        latencies.push(finished - started);
        if (ok) done++;
        else canceled++;
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (p: number) => Number((percentile(latencies, p) ?? 0).toFixed(2));
  return { operation, perSecond: Number((done / seconds).toFixed(1)), done, canceled, p50Ms: at(50), p99Ms: at(99) };
}

const loadBefore = loadavg();
const results: Result[] = [];
for (const [operation, run] of Object.entries(operations)) {
  const r = await measure(operation, run);
  results.push(r);
  console.log(`[bench:dynamodb] ${operation}: ${r.perSecond}/s (${r.done} done, ${r.canceled} canceled; p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms)`);
}
const result = {
  at: new Date().toISOString(),
  machine: { cpus: availableParallelism(), model: cpus()[0]?.model ?? 'unknown', node: process.version, loadavg1mBefore: loadBefore[0], loadavg1mAfter: loadavg()[0] },
  options: { inFlight, seconds, warmup, accounts, store: dir ? 'disk' : 'memory' },
  results,
};
console.log(JSON.stringify(result, null, 2));
if (values.json) {
  await writeFile(values.json, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`[bench:dynamodb] wrote ${values.json}`);
}
client.destroy();
await dynamo.stop();
if (dir) await rm(dir, { recursive: true, force: true });
