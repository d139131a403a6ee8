// The deadlock detector: read the waiters from the lock table, build the wait-for graph, find the
// cycles, abort the youngest transaction of each with the conditional decision write (whoever decides
// sends phase two: the victim's ABORTs go out at once), and record the resolution. Runs on a schedule and on demand (a long wait); any number
// of runs may overlap: the decision write lets exactly one abort win, and the victim choice is
// deterministic, so overlapping runs that see the same cycle pick the same victim.
import { type NodeInfo, type Resolution, buildWaitForGraph, cyclicComponents, planResolution } from '../core/deadlock';
import { parseOwnerKey, type LockItem } from '../core/locks';
import type { Clock, DeadlockRecord, LockStorePort } from '../core/ports';
import { systemClock } from '../aws/system';
import type { TransactionPort } from './transactions';

export interface DetectorDeps {
  store: LockStorePort;
  transactions: TransactionPort;
  nowMs?: Clock;
  logger?: { info(message: string, ...extra: unknown[]): void; warn(message: string, ...extra: unknown[]): void };
}

export interface DetectionReport {
  waitingItems: number;
  nodes: number;
  edges: number;
  /** Transactions in cyclic components, before victims were chosen. */
  inCycles: number;
  resolved: DeadlockRecord[];
  /** Cycles skipped: no longer all there when re-read, or with no transaction to abort. */
  skipped: number;
  elapsedMs: number;
}

/** Transactions whose log records one run reads at most: a bound, far above a real deadlock. */
const MAX_LOOKUPS = 20_000;
const LOOKUP_CONCURRENCY = 16;

export class DeadlockDetector {
  private readonly now: Clock;

  constructor(private readonly deps: DetectorDeps) {
    this.now = deps.nowMs ?? systemClock;
  }

  async run(trigger: DeadlockRecord['trigger'] = 'schedule'): Promise<DetectionReport> {
    const started = this.now();
    const items = await this.deps.store.waiting();
    const graph = buildWaitForGraph(items, started);
    const cyclic = cyclicComponents(graph.adjacency);
    const members = [...new Set(cyclic.flat())].filter((v) => parseOwnerKey(v).kind === 'tx');
    const report: DetectionReport = {
      waitingItems: items.length,
      nodes: graph.adjacency.size,
      edges: graph.resources.size,
      inCycles: members.length,
      resolved: [],
      skipped: 0,
      elapsedMs: 0,
    };
    if (members.length > 0) {
      const info = await this.facts(members.slice(0, MAX_LOOKUPS));
      const plan = planResolution(graph, info);
      report.skipped += plan.unresolvable.length;
      for (const resolution of plan.resolutions) {
        const record = await this.resolve(resolution, trigger);
        if (record) report.resolved.push(record);
        else report.skipped++;
      }
    }
    report.elapsedMs = this.now() - started;
    return report;
  }

  private async facts(nodes: string[]): Promise<Map<string, NodeInfo>> {
    const info = new Map<string, NodeInfo>();
    for (let i = 0; i < nodes.length; i += LOOKUP_CONCURRENCY) {
      await Promise.all(
        nodes.slice(i, i + LOOKUP_CONCURRENCY).map(async (node) => {
          const tx = await this.deps.transactions.get(parseOwnerKey(node).id);
          // No record: nothing to abort (and nothing that can commit): like a finished transaction.
          info.set(node, { createdAt: tx?.createdAt ?? '', abortable: tx?.status === 'PREPARING' });
        }),
      );
    }
    return info;
  }

  /**
   * Re-read the cycle's locks (consistently: the index the scan used may lag) and abort the victim
   * only if every edge is still there. A cycle that is gone needed no victim.
   */
  private async resolve(resolution: Resolution, trigger: DeadlockRecord['trigger']): Promise<DeadlockRecord | undefined> {
    const fresh = new Map<string, LockItem>();
    for (const resource of new Set(resolution.edges.map((e) => e.resource))) fresh.set(resource, await this.deps.store.get(resource));
    const nowMs = this.now();
    const stillThere = resolution.edges.every((e) => {
      const item = fresh.get(e.resource);
      const w = item?.waiters[e.waiter];
      return item?.owners[e.holder] !== undefined && w !== undefined && w.untilMs > nowMs;
    });
    if (!stillThere) return undefined;
    const victim = parseOwnerKey(resolution.victim).id;
    const cycle = resolution.cycle.map((v) => parseOwnerKey(v).id);
    const reason = `deadlock victim: youngest of the cycle ${cycle.join(' -> ')} -> ${cycle[0]}`;
    const { applied } = await this.deps.transactions.abort(victim, reason);
    if (!applied) return undefined;
    const createdAt = new Date(nowMs).toISOString();
    const record: DeadlockRecord = {
      id: `deadlock#${createdAt}#${victim}`,
      createdAt,
      victim,
      cycle,
      edges: resolution.edges.map((e) => ({ waiter: parseOwnerKey(e.waiter).id, holder: parseOwnerKey(e.holder).id, resource: e.resource })),
      trigger,
    };
    await this.deps.store.putDeadlock(record, nowMs);
    this.deps.logger?.info('deadlock resolved', { victim, cycle, trigger });
    return record;
  }
}
