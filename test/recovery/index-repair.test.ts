// dynalite's indexes after kill -9 (src/local/index-repair.ts): a process writing as fast as it can
// is killed at random moments until its index disagrees with its items, and the repair must make
// them agree again (every item indexed under its own key, nothing else in the index).
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { expect, it } from 'vitest';
import { startDynamo } from '../../src/local/dynamodb';
import { repairIndexes } from '../../src/local/index-repair';

const writer = fileURLToPath(new URL('./dynalite-writer.ts', import.meta.url));

async function writeAndKill(dir: string, afterMs: number): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', writer, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', () => resolve());
    child.once('exit', (code) => reject(new Error(`writer exited with ${code}`)));
  });
  await new Promise((r) => setTimeout(r, afterMs));
  child.kill('SIGKILL');
  await exited;
}

type Item = Record<string, AttributeValue>;

async function scan(client: DynamoDBClient, indexName?: string): Promise<Item[]> {
  const out = await client.send(new ScanCommand({ TableName: 'log', ...(indexName ? { IndexName: indexName } : {}) }));
  return out.Items ?? [];
}

/** Index entries that are not exactly the items' own keys, and items missing from the index. */
async function disagreement(client: DynamoDBClient): Promise<{ stale: number; missing: number }> {
  const key = (i: Item) => `${i.pk?.S}|${i.updatedAt?.S}`;
  const expected = new Set((await scan(client)).filter((i) => i.openPk).map(key));
  const actual = new Set((await scan(client, 'open')).map(key));
  return { stale: [...actual].filter((k) => !expected.has(k)).length, missing: [...expected].filter((k) => !actual.has(k)).length };
}

it('kill -9 leaves dynalite indexes inconsistent, and the repair mends them', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dtc-index-'));
  try {
    let found = { stale: 0, missing: 0 };
    let kills = 0;
    for (; kills < 12 && found.stale + found.missing === 0; kills++) {
      await writeAndKill(dir, 300 + kills * 37);
      const dynamo = await startDynamo({ path: dir });
      const client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
      try {
        found = await disagreement(client);
        if (found.stale + found.missing > 0) {
          const report = await repairIndexes(client, 'log');
          expect(report.staleRemoved + report.missingRestored).toBeGreaterThanOrEqual(1);
          expect(await disagreement(client)).toEqual({ stale: 0, missing: 0 });
          // A second repair finds nothing left to do.
          expect(await repairIndexes(client, 'log')).toEqual({ table: 'log', staleRemoved: 0, missingRestored: 0 });
        }
      } finally {
        client.destroy();
        await dynamo.stop();
      }
    }
    console.log(`[index-repair] inconsistency after ${kills} kill(s): ${JSON.stringify(found)}`);
    expect(found.stale + found.missing, `no kill out of ${kills} left the index inconsistent`).toBeGreaterThan(0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
