// Crash atomicity of the embedded DynamoDB: a process flooding it with transfers between accounts
// (TransactWriteItems) and with single writes that move items between index keys is killed with
// SIGKILL at random moments and restarted on the same data. Each time, the total money is what it
// was funded with, and every index holds exactly the entries of the items as they are: a
// transaction's items and index entries, and a single write's item and index entries, land in one
// LevelDB batch (dynamodb-transactions.mjs), so a kill leaves all of one or none of it.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { expect, it } from 'vitest';
import { startDynamo } from '../../src/local/dynamodb';
import { pause } from '../support/fixtures';

const writer = fileURLToPath(new URL('./dynamodb-crash-writer.ts', import.meta.url));
// The writer's table (dynamodb-crash-writer.ts): importing it would run it.
const TABLE = 'crash-accounts';
const INDEX = 'byOwner';
const KILLS = 4;

type Item = Record<string, AttributeValue>;

/** Runs the writer until it floods, lets it write for `afterMs`, then kill -9; answers how many accounts it funds. */
async function floodAndKill(dir: string, afterMs: number): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', writer, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const accounts = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolve(Number(line.replace(/^writing /, ''))));
    child.once('exit', (code) => reject(new Error(`writer exited with ${code}`)));
  });
  // A random moment in a stream of writes: this paces the kill, no assertion waits on it.
  await pause(afterMs);
  child.kill('SIGKILL');
  await exited;
  return accounts;
}

async function scanAll(client: DynamoDBClient, indexName?: string): Promise<Item[]> {
  const items: Item[] = [];
  let ExclusiveStartKey: Item | undefined;
  do {
    const out = await client.send(new ScanCommand({ TableName: TABLE, ...(indexName ? { IndexName: indexName } : { ConsistentRead: true }), ...(ExclusiveStartKey ? { ExclusiveStartKey } : {}) }));
    items.push(...(out.Items ?? []));
    ExclusiveStartKey = out.LastEvaluatedKey;
  } while (ExclusiveStartKey);
  return items;
}

it(`kill -9 in a flood of transfers leaves the total unchanged and every index exact (${KILLS} kills)`, async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dtc-ddb-crash-'));
  const balances: number[][] = [];
  try {
    for (let kill = 0; kill < KILLS; kill++) {
      const accounts = await floodAndKill(dir, 400 + Math.floor(Math.random() * 600));
      const dynamo = await startDynamo({ path: dir });
      const client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
      try {
        const items = await scanAll(client);
        const accountItems = items.filter((i) => i.pk!.S!.startsWith('acct-'));
        expect(accountItems).toHaveLength(accounts);
        const total = accountItems.reduce((sum, i) => sum + Number(i.balance!.N), 0);
        expect(total).toBe(accounts * 1000);
        balances.push(accountItems.map((i) => Number(i.balance!.N)));
        // The index holds exactly one entry per item with an owner, under that owner, and nothing else.
        const expected = items.filter((i) => i.owner).map((i) => `${i.pk!.S}|${i.owner!.S}`).sort();
        const indexed = (await scanAll(client, INDEX)).map((i) => `${i.pk!.S}|${i.owner!.S}`).sort();
        expect(indexed).toEqual(expected);
      } finally {
        client.destroy();
        await dynamo.stop();
      }
    }
    // The floods did move money (the kills did not all land before the first transfer).
    expect(balances.some((b) => b.some((x) => x !== 1000))).toBe(true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
