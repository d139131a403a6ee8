// Many seeds, with or without a planted mutation (src/core/mutations.ts).
import { MUTATIONS, setMutation, type Mutation } from '../../src/core/mutations';
import { runWorld, type WorldResult } from './world';

export { MUTATIONS, type Mutation };

const SUMMED = ['transactions', 'committed', 'aborted', 'crashes', 'freezes', 'deadlocksResolved', 'events', 'forgeries', 'forgeriesDeadLettered', 'strangerVotes', 'supervisors', 'executionsLost', 'executionsStopped', 'latePrepares', 'inDoubtMarked', 'parked', 'generationsClaimed'] as const;

/** Totals over seeds: every counter of a world's stats is summed (SUMMED), except the ones kept as a maximum. */
export interface SeedsResult extends Pick<WorldResult['stats'], (typeof SUMMED)[number]> {
  seedsRun: number;
  failures: { seed: number; violations: string[] }[];
  /** The longest any seed took to settle after its faults healed, and that seed. */
  maxSettledAfterHealMs: number;
  slowestSeed: number;
}

export interface SeedOptions {
  mutation?: Mutation | undefined;
  trace?: boolean | undefined;
  strictBarrier?: boolean | undefined;
  strictDeadline?: boolean | undefined;
}

export async function runSeed(seed: number, { mutation, trace = false, strictBarrier = false, strictDeadline = false }: SeedOptions = {}): Promise<WorldResult> {
  setMutation(mutation);
  try {
    return await runWorld({ seed, trace, strictBarrier, strictDeadline });
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
  strictDeadline?: boolean;
  onSeed?: (r: WorldResult) => void;
}

export const emptyTotals = (): SeedsResult => ({
  seedsRun: 0,
  failures: [],
  ...(Object.fromEntries(SUMMED.map((k) => [k, 0])) as Record<(typeof SUMMED)[number], number>),
  maxSettledAfterHealMs: 0,
  slowestSeed: 0,
});

/** Adds `b` into `a`; failures stay in seed order. */
export function addTotals(a: SeedsResult, b: SeedsResult): SeedsResult {
  const sum = { ...a, seedsRun: a.seedsRun + b.seedsRun, failures: [...a.failures, ...b.failures].sort((x, y) => x.seed - y.seed) };
  for (const k of SUMMED) sum[k] = a[k] + b[k];
  if (b.maxSettledAfterHealMs > a.maxSettledAfterHealMs) Object.assign(sum, { maxSettledAfterHealMs: b.maxSettledAfterHealMs, slowestSeed: b.slowestSeed });
  return sum;
}

/**
 * Seeds `from`, `from + step`, ... below `from + count`; with `stopAtFirst`, stops at the first seed
 * that fails. (Workers that each take every n-th seed and stop at their first failure together find
 * the lowest failing seed: any lower one would have been some worker's first.)
 */
export async function runSeeds(options: SeedsOptions): Promise<SeedsResult> {
  const from = options.from ?? 1;
  const step = options.step ?? 1;
  let total = emptyTotals();
  for (let seed = from; seed < from + options.count; seed += step) {
    const r = await runSeed(seed, { mutation: options.mutation, strictBarrier: options.strictBarrier, strictDeadline: options.strictDeadline });
    options.onSeed?.(r);
    const one: SeedsResult = {
      seedsRun: 1,
      failures: r.violations.length > 0 ? [{ seed, violations: r.violations }] : [],
      ...(Object.fromEntries(SUMMED.map((k) => [k, r.stats[k]])) as Record<(typeof SUMMED)[number], number>),
      maxSettledAfterHealMs: r.stats.settledAfterHealMs,
      slowestSeed: seed,
    };
    total = addTotals(total, one);
    if (r.violations.length > 0 && options.stopAtFirst) break;
  }
  return total;
}
