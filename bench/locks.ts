// Lock service latency and throughput on the embedded stack (the lock table provisioned from the
// CDK app on dynalite). Usage: npm run bench:locks -- [--clients 16] [--seconds 10] [--hot 4]
// Scenarios, each for --seconds with --clients concurrent loops:
//   free        acquire X + release on a resource nobody else uses (standalone owner)
//   free-tx     the same for a transaction owner (adds the release-index write)
//   hot         acquire X (waiting) + release on --hot shared resources: latency includes the wait
//   api         POST /locks/{r} + DELETE over HTTP (API Gateway -> api λ -> lock service)
// Prints acquires/s and acquire latency p50/p99 (ms).
import { parseArgs } from 'node:util';
import { percentile } from '../src/console/series';
import { DEFAULT_SUPERVISION, newOps, newTransaction } from '../src/core/transaction';
import { TxLog, documentClient } from '../src/aws/log-store';
import { Transactions, createLocks } from '../src/locks';
import { startLocalStack } from '../src/local/stack';

const { values } = parseArgs({
  options: { clients: { type: 'string', default: '16' }, seconds: { type: 'string', default: '10' }, hot: { type: 'string', default: '4' } },
});
const clients = Number(values.clients);
const seconds = Number(values.seconds);
const hot = Number(values.hot);

const stack = await startLocalStack({ port: 0, context: { detectorLocalRateSeconds: 60 } });
const log = new TxLog(documentClient(stack.dynamodb), stack.outputs.txTable);
// The coordinator's own view of transactions (the stack's coordinator, as the api function builds
// it); imported once the stack has set the environment the handlers read.
const { getCoordinator } = await import('../src/aws/runtime');
const { locks } = createLocks({ lockTable: stack.outputs.lockTable, transactions: new Transactions(log, getCoordinator()), dynamodb: stack.dynamodb });

async function scenario(name: string, once: (client: number, i: number) => Promise<number>): Promise<void> {
  const latencies: number[] = [];
  const until = Date.now() + seconds * 1000;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let i = 0; Date.now() < until; i++) latencies.push(await once(client, i));
    }),
  );
  const elapsed = (Date.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  console.log(
    `${name.padEnd(8)} ${String(latencies.length).padStart(6)} acquires  ${(latencies.length / elapsed).toFixed(0).padStart(5)}/s  ` +
      `p50 ${(percentile(latencies, 50) ?? NaN).toFixed(1)} ms  p99 ${(percentile(latencies, 99) ?? NaN).toFixed(1)} ms`,
  );
}

const timed = async (f: () => Promise<unknown>): Promise<number> => {
  const t = performance.now();
  await f();
  return performance.now() - t;
};

console.log(`[bench:locks] ${clients} clients, ${seconds} s per scenario, ${hot} hot resources`);
await scenario('free', async (c, i) => {
  const resource = `free/${c}/${i}`;
  const owner = { kind: 'owner' as const, id: `c${c}` };
  const ms = await timed(() => locks.acquire({ resource, owner, mode: 'X', scope: 'api', leaseMs: 30_000, waitMs: 0 }));
  await locks.release(resource, owner, 'api');
  return ms;
});

await scenario('free-tx', async (c, i) => {
  const txId = `bench-${c}-${i}`;
  const request = { participants: [{ service: 'inventory', operation: {} }], timeouts: { prepareSeconds: 60, commitSeconds: 30 } };
  const nowMs = Date.now();
  await log.create(newTransaction({ txId, request, nowMs, requestHash: 'bench', supervision: DEFAULT_SUPERVISION }), newOps(txId, request, nowMs, 30));
  const owner = { kind: 'tx' as const, id: txId };
  const ms = await timed(() => locks.acquire({ resource: `freetx/${c}/${i}`, owner, mode: 'X', scope: 'inventory', leaseMs: 30_000, waitMs: 0 }));
  await locks.releaseAll(owner, 'inventory');
  return ms;
});

await scenario('hot', async (c, i) => {
  const resource = `hot/${(c + i) % hot}`;
  const owner = { kind: 'owner' as const, id: `c${c}` };
  const ms = await timed(() => locks.acquire({ resource, owner, mode: 'X', scope: 'api', leaseMs: 30_000, waitMs: 60_000 }));
  await locks.release(resource, owner, 'api');
  return ms;
});

await scenario('api', async (c, i) => {
  const url = `${stack.outputs.apiUrl}/locks/api-${c}-${i}`;
  const ms = await timed(async () => {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ owner: `c${c}`, leaseSeconds: 30 }) });
    if (res.status !== 200) throw new Error(`POST ${url} answered ${res.status}: ${await res.text()}`);
  });
  const res = await fetch(`${url}?owner=c${c}`, { method: 'DELETE' });
  if (res.status !== 200) throw new Error(`DELETE ${url} answered ${res.status}`);
  return ms;
});

await stack.stop();
