// dynalite's indexes after kill -9 (src/local/index-repair.ts): a process writing as fast as it can
// is killed at random moments until its index disagrees with its items, and the repair must make
// them agree again (every item indexed under its own key, nothing else in the index).
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type DynamoDBClient, ScanCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { expect, it } from 'vitest';
import { repairIndexes } from '../../src/local/index-repair';
import { startLocalAws } from '../support/aws';
import { pause } from '../support/fixtures';

const writer = fileURLToPath(new URL('./dynalite-writer.ts', import.meta.url));

/** Runs the writer for `afterMs` once it writes, then kill -9; answers the log table's name. */
async function writeAndKill(dir: string, afterMs: number): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', writer, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const table = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (line) => resolve(line.replace(/^writing /, '')));
    child.once('exit', (code) => reject(new Error(`writer exited with ${code}`)));
  });
  // A random moment in a stream of writes: this paces the kill, no assertion waits on it.
  await pause(afterMs);
  child.kill('SIGKILL');
  await exited;
  return table;
}

type Item = Record<string, AttributeValue>;

async function scan(client: DynamoDBClient, table: string, indexName?: string): Promise<Item[]> {
  const out = await client.send(new ScanCommand({ TableName: table, ...(indexName ? { IndexName: indexName } : {}) }));
  return out.Items ?? [];
}

/** Index entries that are not exactly the items' own keys, and items missing from the index. */
async function disagreement(client: DynamoDBClient, table: string): Promise<{ stale: number; missing: number }> {
  const key = (i: Item) => `${i.pk?.S}|${i.og?.S}|${i.prepareDeadlineAt?.N}`;
  const expected = new Set((await scan(client, table)).filter((i) => i.og).map(key));
  const actual = new Set((await scan(client, table, 'open')).map(key));
  return { stale: [...actual].filter((k) => !expected.has(k)).length, missing: [...expected].filter((k) => !actual.has(k)).length };
}

it('kill -9 leaves dynalite indexes inconsistent, and the repair mends them', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dtc-index-'));
  try {
    let found = { stale: 0, missing: 0 };
    let kills = 0;
    for (; kills < 12 && found.stale + found.missing === 0; kills++) {
      const table = await writeAndKill(dir, 300 + kills * 37);
      // The data on disk as the killed writer left it: no provisioning, so no repair on start.
      const aws = await startLocalAws({ dynamodb: { path: dir } });
      const client = aws.dynamodb;
      try {
        found = await disagreement(client, table);
        if (found.stale + found.missing > 0) {
          const report = await repairIndexes(client, table);
          expect(report.staleRemoved + report.missingRestored).toBeGreaterThanOrEqual(1);
          expect(await disagreement(client, table)).toEqual({ stale: 0, missing: 0 });
          // A second repair finds nothing left to do.
          expect(await repairIndexes(client, table)).toEqual({ table, staleRemoved: 0, missingRestored: 0 });
        }
      } finally {
        await aws.stop();
      }
    }
    console.log(`[index-repair] inconsistency after ${kills} kill(s): ${JSON.stringify(found)}`);
    expect(found.stale + found.missing, `no kill out of ${kills} left the index inconsistent`).toBeGreaterThan(0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
