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

/** Seeds `from` .. `from + count - 1`; with `stopAtFirst`, stops at the first seed that fails. */
export async function runSeeds(options: { from?: number; count: number; mutation?: Mutation; stopAtFirst?: boolean; strictBarrier?: boolean; onSeed?: (r: WorldResult) => void }): Promise<SeedsResult> {
  const from = options.from ?? 1;
  const total: SeedsResult = { seedsRun: 0, failures: [], transactions: 0, committed: 0, aborted: 0, crashes: 0, freezes: 0, deadlocksResolved: 0, events: 0 };
  for (let seed = from; seed < from + options.count; seed++) {
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
