// Many seeds, with or without a planted mutation (src/core/mutations.ts).
import { MUTATIONS, setMutation, type Mutation } from '../../src/core/mutations';
import { runWorld, type WorldResult } from './world';

export { MUTATIONS, type Mutation };

export interface SeedsResult {
  seedsRun: number;
  failures: { seed: number; violations: string[] }[];
  transactions: number;
  committed: number;
  aborted: number;
  crashes: number;
  freezes: number;
  deadlocksResolved: number;
  events: number;
}

export async function runSeed(seed: number, mutation?: Mutation, trace = false, strictBarrier = false): Promise<WorldResult> {
  setMutation(mutation);
  try {
    return await runWorld({ seed, trace, strictBarrier });
  } finally {
    setMutation(undefined);
  }
}

export interface SeedsOptions {
  from?: number;
  count: number;
  /** Run every `step`-th seed from `from` (a worker's share); default 1. */
  step?: number;
  mutation?: Mutation;
  stopAtFirst?: boolean;
  strictBarrier?: boolean;
  onSeed?: (r: WorldResult) => void;
}

export const emptyTotals = (): SeedsResult => ({ seedsRun: 0, failures: [], transactions: 0, committed: 0, aborted: 0, crashes: 0, freezes: 0, deadlocksResolved: 0, events: 0 });

/** Adds `b` into `a`; failures stay in seed order. */
export function addTotals(a: SeedsResult, b: SeedsResult): SeedsResult {
  return {
    seedsRun: a.seedsRun + b.seedsRun,
    failures: [...a.failures, ...b.failures].sort((x, y) => x.seed - y.seed),
    transactions: a.transactions + b.transactions,
    committed: a.committed + b.committed,
    aborted: a.aborted + b.aborted,
    crashes: a.crashes + b.crashes,
    freezes: a.freezes + b.freezes,
    deadlocksResolved: a.deadlocksResolved + b.deadlocksResolved,
    events: a.events + b.events,
  };
}

/**
 * Seeds `from`, `from + step`, ... below `from + count`; with `stopAtFirst`, stops at the first seed
 * that fails. (Workers that each take every n-th seed and stop at their first failure together find
 * the lowest failing seed: any lower one would have been some worker's first.)
 */
export async function runSeeds(options: SeedsOptions): Promise<SeedsResult> {
  const from = options.from ?? 1;
  const step = options.step ?? 1;
  const total = emptyTotals();
  for (let seed = from; seed < from + options.count; seed += step) {
    const r = await runSeed(seed, options.mutation, false, options.strictBarrier);
    options.onSeed?.(r);
    total.seedsRun++;
    total.transactions += r.stats.transactions;
    total.committed += r.stats.committed;
    total.aborted += r.stats.aborted;
    total.crashes += r.stats.crashes;
    total.freezes += r.stats.freezes;
    total.deadlocksResolved += r.stats.deadlocksResolved;
    total.events += r.stats.events;
    if (r.violations.length > 0) {
      total.failures.push({ seed, violations: r.violations });
      if (options.stopAtFirst) break;
    }
  }
  return total;
}
