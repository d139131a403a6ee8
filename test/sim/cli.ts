// `npm run sim -- [--seeds N] [--from N] [--mutation NAME] [--seed N --trace]`
// Runs the deterministic simulation outside the test runner: many seeds, or one seed with its trace.
import { parseArgs } from 'node:util';
import { MUTATIONS, runSeeds, simulate, type Mutation } from '../../src/core/simulation';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '10000' },
    from: { type: 'string', default: '1' },
    seed: { type: 'string' },
    mutation: { type: 'string', default: 'none' },
    trace: { type: 'boolean', default: false },
    mutations: { type: 'boolean', default: false },
  },
});

const mutation = values.mutation as Mutation;
if (mutation !== 'none' && !(MUTATIONS as readonly string[]).includes(mutation)) {
  console.error(`unknown mutation ${mutation}; known: ${MUTATIONS.join(', ')}`);
  process.exit(2);
}

if (values.seed !== undefined) {
  const run = simulate({ seed: Number(values.seed), mutation, trace: values.trace });
  if (run.trace) for (const line of run.trace) console.log(line);
  console.log(JSON.stringify(run.stats));
  console.log(run.violations.length === 0 ? 'no violations' : `VIOLATIONS:\n  ${run.violations.join('\n  ')}`);
  process.exit(run.violations.length === 0 ? 0 : 1);
}

const count = Number(values.seeds);
const from = Number(values.from);
const kinds: Mutation[] = values.mutations ? ['none', ...MUTATIONS] : [mutation];
let failed = false;
for (const kind of kinds) {
  const started = performance.now();
  const r = runSeeds({ from, count, mutation: kind, stopAtFirst: kind !== 'none' });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const summary = `${r.seedsRun} seeds in ${seconds} s, ${r.transactions} transactions (${r.committed} committed, ${r.aborted} aborted), ${r.crashes} crashes, ${r.recoveries} recoveries, ${r.inquiries} inquiries, longest settle after heal ${r.maxSettledAfterHealMs} ms`;
  if (kind === 'none') {
    console.log(`[none] ${summary}`);
    for (const f of r.failures.slice(0, 10)) console.log(`  seed ${f.seed}: ${f.violations.join('; ')}`);
    failed ||= r.failures.length > 0;
  } else {
    console.log(`[${kind}] ${r.firstFailingSeed === undefined ? 'NOT CAUGHT' : `caught at seed ${r.firstFailingSeed}`} after ${summary}`);
    if (r.failures[0]) console.log(`  ${r.failures[0].violations[0]}`);
    failed ||= r.firstFailingSeed === undefined;
  }
}
process.exit(failed ? 1 : 0);
