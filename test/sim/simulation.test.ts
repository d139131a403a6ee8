// The simulation of the real product (test/sim/world.ts): many seeds of crashes, freezes, lost,
// duplicated and late messages, clock skew, lost supervisor executions, deadlocks, forged replies and
// recovery, with every invariant of DESIGN.md checked after each; then each bug planted in the
// product's own code (src/core/mutations.ts) must be caught. A failure names its seed:
// `npm run sim -- --seed <n> --trace` replays it exactly. `npm run sim -- --seeds 10000 --workers 2`
// runs many more than this test does (it keeps npm test's share near a minute on 2 cores).
import { describe, expect, it } from 'vitest';
import { MUTATIONS, runSeed, runSeeds, type SeedsResult } from './run';
import { BOUND_AFTER_HEAL_MS } from './world';

const SEEDS = Number(process.env.DTC_SIM_SEEDS ?? 400);
const MUTATION_SEEDS = Number(process.env.DTC_SIM_MUTATION_SEEDS ?? 1000);

function describeFailure(r: SeedsResult): string {
  const f = r.failures[0];
  return f ? `seed ${f.seed} (replay: npm run sim -- --seed ${f.seed} --trace): ${f.violations.join('; ')}` : 'none';
}

describe('the product under simulated faults', () => {
  it(`keeps every invariant over ${SEEDS} seeds`, async () => {
    const started = performance.now();
    const r = await runSeeds({ count: SEEDS });
    const ms = performance.now() - started;
    expect(describeFailure(r)).toBe('none');
    expect(r.seedsRun).toBe(SEEDS);
    // The runs did exercise the failure paths, not just the happy one.
    expect(r.crashes).toBeGreaterThan(SEEDS);
    expect(r.freezes).toBeGreaterThan(SEEDS / 10);
    expect(r.deadlocksResolved).toBeGreaterThan(SEEDS / 40);
    expect(r.committed).toBeGreaterThan(SEEDS);
    expect(r.aborted).toBeGreaterThan(SEEDS);
    expect(r.forgeries).toBeGreaterThan(SEEDS);
    expect(r.forgeriesDeadLettered).toBeGreaterThan(SEEDS);
    expect(r.strangerVotes).toBeGreaterThan(SEEDS / 10);
    expect(r.supervisors).toBeGreaterThan(SEEDS);
    expect(r.executionsLost).toBeGreaterThan(0);
    expect(r.maxSettledAfterHealMs).toBeLessThan(BOUND_AFTER_HEAL_MS);
    console.log(
      `[sim] ${SEEDS} seeds in ${(ms / 1000).toFixed(1)} s: ${r.transactions} transactions (${r.committed} committed, ${r.aborted} aborted), ` +
        `${r.crashes} crashes, ${r.freezes} freezes, ${r.deadlocksResolved} deadlocks resolved, ${r.forgeries} forged replies, ` +
        `${r.supervisors} supervisors, ${r.executionsLost} losses of every execution, ${r.events} events; ` +
        `longest to settle after healing ${(r.maxSettledAfterHealMs / 1000).toFixed(1)} s (seed ${r.slowestSeed})`,
    );
  }, 900_000);

  it('replays a seed exactly', async () => {
    const a = await runSeed(4242, { trace: true });
    const b = await runSeed(4242, { trace: true });
    expect(b.trace).toEqual(a.trace);
    expect(b.stats).toEqual(a.stats);
    expect(a.trace!.length).toBeGreaterThan(50);
  });
});

describe('bugs planted in the product are caught', () => {
  // How many seeds each needed is part of the report: a mutation that needs thousands is a weak test.
  it.each(MUTATIONS.map((m) => [m]))('%s', async (mutation) => {
    const started = performance.now();
    const r = await runSeeds({ count: MUTATION_SEEDS, mutation, stopAtFirst: true });
    const ms = performance.now() - started;
    expect(r.failures[0]?.seed, `${mutation} was never caught in ${MUTATION_SEEDS} seeds`).toBeDefined();
    console.log(`[sim] ${mutation}: caught at seed ${r.failures[0]!.seed} (${ms.toFixed(0)} ms): ${r.failures[0]!.violations[0]}`);
  }, 600_000);
});
