// The deadlock detector's cost for N waiting transactions (default 10,000).
// Usage: npm run bench:detector -- [--waiting 10000] [--cycles 100] [--table]
// Each waiting transaction holds one resource and waits for another one's resource: chains that
// end at a transaction that does not wait, plus --cycles two-way deadlocks. Timed, best of 5:
//   graph    lock items -> wait-for graph (buildWaitForGraph)
//   scc      Tarjan over the graph (cyclicComponents)
//   plan     victims for every cycle (planResolution, ages known)
// With --table it also writes the items to a lock table on dynalite (the embedded stack's, from
// the CDK app) and times the detector's read of the waiting index and a full run.
import { parseArgs } from 'node:util';
import { buildWaitForGraph, cyclicComponents, planResolution, type NodeInfo } from '../src/core/deadlock';
import type { LockItem } from '../src/core/locks';

const { values } = parseArgs({
  options: { waiting: { type: 'string', default: '10000' }, cycles: { type: 'string', default: '100' }, table: { type: 'boolean', default: false } },
});
const waiting = Number(values.waiting);
const cycles = Number(values.cycles);
const NOW = 1_800_000_000_000;

/** n waiting transactions t0..t(n-1); t(i) holds r(i). Chains of 10: t(i) waits for r(i+1), and
 *  the last of a chain for a resource held by a transaction that waits for nothing; then
 *  `twoCycles` pairs that wait for each other. */
function items(n: number, twoCycles: number): LockItem[] {
  const holder = { mode: 'X' as const, token: 1, leaseUntilMs: NOW + 60_000, grantedAtMs: NOW, scopes: ['bench'] };
  const waiter = { mode: 'X' as const, sinceMs: NOW, untilMs: NOW + 60_000 };
  const lock = (resource: string, owner: string): LockItem => ({ resource, version: 1, token: 1, owners: { [owner]: holder }, waiters: {} });
  const all: LockItem[] = Array.from({ length: n }, (_, i) => lock(`r${i}`, `tx#t${i}`));
  const chainEnd = n - 2 * twoCycles;
  for (let i = 0; i < n; i++) {
    if (i >= chainEnd) all[(i - chainEnd) % 2 === 0 ? i + 1 : i - 1]!.waiters[`tx#t${i}`] = waiter;
    else if ((i + 1) % 10 !== 0 && i + 1 < chainEnd) all[i + 1]!.waiters[`tx#t${i}`] = waiter;
    else {
      const end = lock(`end${i}`, `tx#running${i}`);
      end.waiters[`tx#t${i}`] = waiter;
      all.push(end);
    }
  }
  return all.filter((item) => Object.keys(item.waiters).length > 0);
}

function best(label: string, run: () => unknown): number {
  let bestMs = Infinity;
  for (let k = 0; k < 5; k++) {
    const t = performance.now();
    run();
    bestMs = Math.min(bestMs, performance.now() - t);
  }
  console.log(`${label.padEnd(8)} ${bestMs.toFixed(1).padStart(8)} ms`);
  return bestMs;
}

const lockItems = items(waiting, cycles);
console.log(`[bench:detector] ${waiting} waiting transactions, ${lockItems.length} lock items with waiters, ${cycles} two-way deadlocks`);
const graph = buildWaitForGraph(lockItems, NOW);
console.log(`graph: ${graph.adjacency.size} nodes, ${graph.resources.size} edges`);
best('graph', () => buildWaitForGraph(lockItems, NOW));
best('scc', () => cyclicComponents(graph.adjacency));
const info = new Map<string, NodeInfo>([...graph.adjacency.keys()].map((v, i) => [v, { createdAt: new Date(NOW + i).toISOString(), abortable: true }]));
let victims = 0;
best('plan', () => {
  victims = planResolution(graph, info).resolutions.length;
});
if (victims !== cycles) throw new Error(`expected ${cycles} victims, planned ${victims}`);
console.log(`plan: ${victims} victims (one per cycle)`);

if (values.table) {
  const { startLocalStack } = await import('../src/local/stack');
  const { createLocks, Transactions } = await import('../src/locks');
  const { TxLog, documentClient } = await import('../src/aws/log-store');
  const stack = await startLocalStack({ port: 0, context: { detectorLocalRateSeconds: 3600 } });
  // Once the stack has set the environment the handlers read.
  const { getCoordinator } = await import('../src/aws/runtime');
  const log = new TxLog(documentClient(stack.dynamodb), stack.outputs.txTable);
  const { locks, detector } = createLocks({ lockTable: stack.outputs.lockTable, transactions: new Transactions(log, getCoordinator()), dynamodb: stack.dynamodb });
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < lockItems.length) {
        const item = lockItems[next++]!;
        // Waiter entries far in the future so that none is stale when the detector reads them.
        const fresh = { ...item, waiters: Object.fromEntries(Object.entries(item.waiters).map(([k, w]) => [k, { ...w, untilMs: Date.now() + 3_600_000 }])) };
        if (!(await locks.store.put({ ...fresh, version: 0 }, 0, Date.now()))) throw new Error(`item ${item.resource} exists`);
      }
    }),
  );
  console.log(`table: wrote ${lockItems.length} items in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  let t = performance.now();
  const read = await locks.store.waiting();
  console.log(`scan     ${(performance.now() - t).toFixed(1).padStart(8)} ms  (${read.length} items through the waiting index)`);
  // A full run: scan, graph, Tarjan, the members' log records (absent here: nothing is aborted).
  t = performance.now();
  const report = await detector.run('schedule');
  console.log(`run      ${(performance.now() - t).toFixed(1).padStart(8)} ms  (${report.nodes} nodes, ${report.edges} edges, ${report.inCycles} in cycles)`);
  await stack.stop();
}
