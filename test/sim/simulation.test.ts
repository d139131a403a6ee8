// The simulation of the real product (test/sim/world.ts): many seeds of crashes, freezes, lost,
// duplicated and late messages, clock skew, lost executions, deadlocks and recovery, with every
// invariant of DESIGN.md checked after each; then each bug planted in the product's own code
// (src/core/mutations.ts) must be caught. A failure names its seed:
// `npm run sim -- --seed <n> --trace` replays it exactly.
import { describe, expect, it } from 'vitest';
import { MUTATIONS, runSeed, runSeeds, type SeedsResult } from './run';

const SEEDS = Number(process.env.DTC_SIM_SEEDS ?? 5000);
const MUTATION_SEEDS = Number(process.env.DTC_SIM_MUTATION_SEEDS ?? 2000);

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
    expect(r.deadlocksResolved).toBeGreaterThan(SEEDS / 20);
    expect(r.committed).toBeGreaterThan(SEEDS);
    expect(r.aborted).toBeGreaterThan(SEEDS);
    console.log(
      `[sim] ${SEEDS} seeds in ${(ms / 1000).toFixed(1)} s: ${r.transactions} transactions (${r.committed} committed, ${r.aborted} aborted), ` +
        `${r.crashes} crashes, ${r.freezes} freezes, ${r.deadlocksResolved} deadlocks resolved, ${r.events} events`,
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
