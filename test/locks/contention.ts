// A contention run: many transactions on a few hot resources, each locking 2-3 of them in a random
// order (opposite orders included, so deadlocks happen), S or X, with the detector breaking cycles.
// Two independent checks of mutual exclusion: an in-memory model that every holder enters after
// its grant and leaves before its release, and a monitor that samples the lock items. Not a test
// file itself: test/locks/contention.test.ts runs a short version, `npm run test:contention` a long one.
import type { LockMode } from '../../src/core/locks';
import { LockWaitTimeoutError, TransactionAbortedError } from '../../src/locks/service';
import { pause } from '../support/fixtures';
import type { LockEnv } from './local';

export interface ContentionOptions {
  transactions: number;
  workers: number;
  resources: number;
  seed: number;
}

export interface ContentionReport {
  committed: number;
  aborted: number;
  victims: number;
  deadlocksRecorded: number;
  violations: string[];
  grants: number;
  samples: number;
  elapsedMs: number;
  /** Resource -> tokens of its new grants, in grant order per resource. */
  tokens: Map<string, number[]>;
  leaks: string[];
}

/** mulberry32: a seeded PRNG, so a failing seed replays the same choices. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function contentionRun(env: LockEnv, options: ContentionOptions): Promise<ContentionReport> {
  const random = prng(options.seed);
  // Short pauses: the run is about correctness under contention, and each deadlock costs a few polls.
  const locks = env.service({ detectAfterMs: 200, random, backoff: { initialMs: 10, maxMs: 100 } });
  const hot = Array.from({ length: options.resources }, (_, i) => `hot-${options.seed}/${i}`);
  const report: ContentionReport = {
    committed: 0,
    aborted: 0,
    victims: 0,
    deadlocksRecorded: 0,
    violations: [],
    grants: 0,
    samples: 0,
    elapsedMs: 0,
    tokens: new Map(hot.map((r) => [r, []])),
    leaks: [],
  };
  // The model: resource -> txId -> mode, for holders between their grant and their release.
  const model = new Map<string, Map<string, LockMode>>(hot.map((r) => [r, new Map()]));
  const enter = (r: string, txId: string, mode: LockMode) => {
    const holders = model.get(r)!;
    for (const [other, m] of holders) {
      if (other !== txId && (m === 'X' || mode === 'X')) report.violations.push(`model: ${txId} (${mode}) and ${other} (${m}) hold ${r}`);
    }
    holders.set(txId, mode);
  };
  const plans = Array.from({ length: options.transactions }, () => {
    const order = [...hot].sort(() => random() - 0.5).slice(0, 2 + Math.floor(random() * 2));
    return order.map((r) => ({ resource: r, mode: (random() < 0.75 ? 'X' : 'S') as LockMode }));
  });

  let stop = false;
  const lastToken = new Map<string, number>();
  const monitor = (async () => {
    while (!stop) {
      for (const r of hot) {
        try {
          const item = await env.store.get(r); // decoding asserts the invariants
          report.samples++;
          if (item.token < (lastToken.get(r) ?? 0)) report.violations.push(`monitor: token of ${r} fell from ${lastToken.get(r)} to ${item.token}`);
          lastToken.set(r, item.token);
        } catch (err) {
          report.violations.push(`monitor: ${(err as Error).message}`);
        }
      }
      await pause(20);
    }
  })();
  const detectorLoop = (async () => {
    while (!stop) {
      await env.detector.run('schedule');
      await pause(500);
    }
  })();

  const started = Date.now();
  const txIds: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < plans.length) {
      const plan = plans[next++]!;
      const txId = await env.newTx('hot', 120);
      txIds.push(txId);
      const owner = { kind: 'tx' as const, id: txId };
      const held: string[] = [];
      let ok = true;
      for (const { resource, mode } of plan) {
        try {
          const grant = await locks.acquire({ resource, owner, mode, scope: 'inventory', leaseMs: 30_000, waitMs: 20_000 });
          report.grants++;
          report.tokens.get(resource)!.push(grant.token);
          enter(resource, txId, mode);
          held.push(resource);
        } catch (err) {
          if (err instanceof TransactionAbortedError) report.victims++;
          else if (!(err instanceof LockWaitTimeoutError)) throw err;
          ok = false;
          break;
        }
      }
      if (ok) await pause(2 + Math.floor(random() * 8)); // the "work" under the locks
      for (const r of held) model.get(r)!.delete(txId);
      const decided = ok && (await env.decideCommit(txId));
      if (decided) report.committed++;
      else {
        await env.log.decideAbort(txId, 'contention run: could not lock', new Date().toISOString());
        report.aborted++;
      }
      await locks.releaseAll(owner, 'inventory');
    }
  };
  try {
    await Promise.all(Array.from({ length: options.workers }, worker));
  } finally {
    stop = true;
    await Promise.all([monitor, detectorLoop]);
  }
  report.elapsedMs = Date.now() - started;
  for (const r of hot) {
    const view = await locks.inspect(r);
    if (view && (view.owners.length > 0 || view.waiters.length > 0)) report.leaks.push(`${r}: ${JSON.stringify(view)}`);
  }
  for (const txId of txIds) {
    const held = await env.store.held(`tx#${txId}`, 'inventory');
    if (held.length > 0) report.leaks.push(`release index of ${txId}: ${held.join(', ')}`);
  }
  let cursor: string | undefined;
  for (let page = 0; page < 1_000; page++) {
    const { items, nextCursor } = await env.store.listDeadlocks(100, cursor);
    report.deadlocksRecorded += items.filter((d) => d.edges.some((e) => e.resource.startsWith(`hot-${options.seed}/`))).length;
    cursor = nextCursor;
    if (!cursor) break;
  }
  return report;
}
