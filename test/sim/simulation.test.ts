// The deterministic simulation of the protocol (src/core/simulation.ts): thousands of seeds of
// crashes, lost, duplicated and reordered messages, recovery and in-doubt inquiry, and every
// invariant checked after each; then each deliberate protocol bug must be caught.
// A failure names its seed: `npx tsx scripts/sim.ts --seed <n> --trace` replays it.
import { describe, expect, it } from 'vitest';
import { MUTATIONS, runSeeds, simulate, type SeedsResult } from '../../src/core/simulation';

const SEEDS = Number(process.env.DTC_SIM_SEEDS ?? 5000);

function describeFailure(r: SeedsResult): string {
  const f = r.failures[0];
  return f ? `seed ${f.seed} (replay: npm run sim -- --seed ${f.seed} --trace): ${f.violations.join('; ')}` : 'none';
}

describe('the protocol under simulated faults', () => {
  it(`keeps every invariant over ${SEEDS} seeds`, () => {
    const started = performance.now();
    const r = runSeeds({ count: SEEDS });
    const ms = performance.now() - started;
    expect(describeFailure(r)).toBe('none');
    expect(r.seedsRun).toBe(SEEDS);
    // The runs did exercise the failure paths, not just the happy one.
    expect(r.crashes).toBeGreaterThan(SEEDS);
    expect(r.recoveries).toBeGreaterThan(SEEDS / 4);
    expect(r.inquiries).toBeGreaterThan(SEEDS / 4);
    expect(r.committed).toBeGreaterThan(0);
    expect(r.aborted).toBeGreaterThan(0);
    console.log(
      `[sim] ${SEEDS} seeds in ${(ms / 1000).toFixed(1)} s: ${r.transactions} transactions (${r.committed} committed, ${r.aborted} aborted), ` +
        `${r.crashes} crashes, ${r.recoveries} recoveries, ${r.inquiries} inquiries, ${r.events} events; ` +
        `longest settle after the faults healed ${(r.maxSettledAfterHealMs / 1000).toFixed(0)} s`,
    );
  });

  it('replays a seed exactly', () => {
    const a = simulate({ seed: 4242, trace: true });
    const b = simulate({ seed: 4242, trace: true });
    expect(b.trace).toEqual(a.trace);
    expect(b.stats).toEqual(a.stats);
    expect(a.trace!.length).toBeGreaterThan(50);
  });
});

describe('deliberately broken protocols are caught', () => {
  // How many seeds each needed is part of the report: a mutation that needs thousands is a weak test.
  it.each(MUTATIONS.map((m) => [m]))('%s', (mutation) => {
    const started = performance.now();
    const r = runSeeds({ count: 5000, mutation });
    const ms = performance.now() - started;
    expect(r.firstFailingSeed, `${mutation} was never caught in 5000 seeds`).toBeDefined();
    console.log(`[sim] ${mutation}: caught at seed ${r.firstFailingSeed} (${r.seedsRun} seeds, ${ms.toFixed(0)} ms): ${r.failures[0]!.violations[0]}`);
  });
});
