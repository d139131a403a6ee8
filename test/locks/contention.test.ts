// Contention on a few hot resources (see contention.ts). The short run is part of `npm test`;
// `npm run test:contention` runs the long one (CONTENTION=long).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contentionRun } from './contention';
import { type LockEnv, startLockEnv } from './local';

const LONG = process.env.CONTENTION === 'long';
const RUNS = LONG
  ? [
      { transactions: 300, workers: 16, resources: 6, seed: 1 },
      { transactions: 300, workers: 24, resources: 4, seed: 2 },
    ]
  : [{ transactions: 30, workers: 6, resources: 4, seed: 7 }];

let env: LockEnv;
beforeAll(async () => {
  env = await startLockEnv();
});
afterAll(async () => {
  await env?.stop();
});

describe(`contention (${LONG ? 'long' : 'short'})`, () => {
  for (const options of RUNS) {
    it(
      `${options.transactions} transactions, ${options.workers} at a time, on ${options.resources} hot resources (seed ${options.seed})`,
      async () => {
        const report = await contentionRun(env, options);
        console.log(
          `[contention] seed ${options.seed}: ${report.committed} committed, ${report.aborted} aborted (${report.victims} deadlock victims, ` +
            `${report.deadlocksRecorded} deadlocks recorded), ${report.grants} grants, ${report.samples} monitor samples, ${report.elapsedMs} ms`,
        );
        // All end.
        expect(report.committed + report.aborted).toBe(options.transactions);
        // No two conflicting locks at once (model and monitor), tokens only rise.
        expect(report.violations).toEqual([]);
        for (const [resource, tokens] of report.tokens) {
          expect(new Set(tokens).size, `tokens of ${resource} are unique per grant`).toBe(tokens.length);
        }
        // No lock leaks.
        expect(report.leaks).toEqual([]);
        expect(report.samples).toBeGreaterThan(0);
        // Opposite lock orders deadlock; every victim was chosen by a recorded resolution.
        expect(report.deadlocksRecorded).toBeGreaterThanOrEqual(report.victims);
        // Progress, not a throughput target: under this much contention many lose (victims, timeouts).
        expect(report.committed).toBeGreaterThan(0);
      },
      LONG ? 900_000 : 60_000,
    );
  }
});
