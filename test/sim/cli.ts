// `npm run sim -- [--seeds N] [--from N] [--workers N] [--mutation NAME | --mutations] [--json] [--strict-barrier] [--strict-deadline] [--seed N --trace]`
// Runs the simulation of the real product outside the test runner: many seeds, or one with its trace.
// With --json the last line is one JSON object (seeds, violations, totals, each mutation's first
// catching seed); the exit status is non-zero on any violation or uncaught mutation.
import { fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MUTATIONS, addTotals, emptyTotals, runSeed, runSeeds, type Mutation, type SeedsOptions, type SeedsResult } from './run';
import { supervisorDefinition } from './definition';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '10000' },
    from: { type: 'string', default: '1' },
    seed: { type: 'string' },
    mutation: { type: 'string' },
    mutations: { type: 'boolean', default: false },
    trace: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    'strict-barrier': { type: 'boolean', default: false },
    /** A participant never runs its prepare after the PREPARE's deadline (issue 10, item 3; not implemented yet). */
    'strict-deadline': { type: 'boolean', default: false },
    /** Worker processes the seeds are shared over (every N-th seed each); default: one per core, at most 4. */
    workers: { type: 'string' },
  },
});

const known = MUTATIONS as readonly string[];
if (values.mutation !== undefined && !known.includes(values.mutation)) {
  console.error(`unknown mutation ${values.mutation}; known: ${MUTATIONS.join(', ')}`);
  process.exit(2);
}
const mutation = values.mutation as Mutation | undefined;

if (values.seed !== undefined) {
  const run = await runSeed(Number(values.seed), { mutation, trace: values.trace, strictBarrier: values['strict-barrier'], strictDeadline: values['strict-deadline'] });
  if (run.trace) for (const line of run.trace) console.log(line);
  console.log(JSON.stringify(run.stats));
  console.log(run.violations.length === 0 ? 'no violations' : `VIOLATIONS:\n  ${run.violations.join('\n  ')}`);
  process.exit(run.violations.length === 0 ? 0 : 1);
}

const count = Number(values.seeds);
const from = Number(values.from);
const workers = Math.max(1, Math.min(count, Number(values.workers ?? Math.min(4, availableParallelism()))));

/** The seeds of `options`, shared over the worker processes (or run here when there is one). */
async function shared(options: Omit<SeedsOptions, 'step' | 'from' | 'onSeed'>): Promise<SeedsResult> {
  if (workers === 1) return runSeeds({ ...options, from, onSeed: progress(options.count) });
  const script = fileURLToPath(new URL('./worker.ts', import.meta.url));
  const parts = await Promise.all(
    Array.from({ length: workers }, (_, i) => {
      const share: SeedsOptions = { ...options, from: from + i, count: count - i, step: workers };
      return new Promise<SeedsResult>((resolve, reject) => {
        const child = fork(script, [JSON.stringify(share)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
        let out = '';
        child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
        child.on('error', reject);
        child.on('exit', (code) => {
          const last = out.trim().split('\n').at(-1);
          if (code === 0 && last) resolve(JSON.parse(last) as SeedsResult);
          else reject(new Error(`simulation worker ${i + 1} of ${workers} exited with ${code}`));
        });
      });
    }),
  );
  return parts.reduce(addTotals, emptyTotals());
}
const started = performance.now();
const strictBarrier = values['strict-barrier'];
const strictDeadline = values['strict-deadline'];
// Synthesize the supervisors' definition once here (cached on disk), not once per worker.
await supervisorDefinition();
const clean = mutation === undefined ? await shared({ count, strictBarrier, strictDeadline }) : undefined;
const cleanSeconds = (performance.now() - started) / 1000;
if (clean) {
  console.log(
    `[sim] ${clean.seedsRun} seeds in ${cleanSeconds.toFixed(1)} s on ${workers} worker${workers === 1 ? '' : 's'} (${(clean.seedsRun / cleanSeconds).toFixed(0)} seeds/s): ` +
      `${clean.transactions} transactions (${clean.committed} committed, ${clean.aborted} aborted), ${clean.crashes} crashes, ` +
      `${clean.freezes} freezes, ${clean.deadlocksResolved} deadlocks resolved, ${clean.events} events; ` +
      `${clean.forgeries} forged replies (${clean.forgeriesDeadLettered} dead-lettered as they were handled), ${clean.strangerVotes} votes from non-members, ` +
      `${clean.supervisors} supervisor executions, Step Functions lost every execution ${clean.executionsLost} times and stopped ${clean.executionsStopped} supervisors, ` +
      `${clean.inDoubtMarked} transactions marked in doubt, ${clean.parked} parked, ${clean.generationsClaimed} supervisor generations claimed, ` +
      `${clean.latePrepares} prepares begun after their deadline; ` +
      `longest to settle after the faults healed: ${(clean.maxSettledAfterHealMs / 1000).toFixed(1)} s (seed ${clean.slowestSeed})`,
  );
  for (const f of clean.failures.slice(0, 10)) console.log(`  seed ${f.seed} (replay: npm run sim -- --seed ${f.seed} --trace): ${f.violations.join('; ')}`);
}

const planted: Mutation[] = values.mutations ? [...MUTATIONS] : mutation ? [mutation] : [];
const caught: { name: Mutation; caughtAtSeed: number | null; violation?: string }[] = [];
for (const name of planted) {
  const t0 = performance.now();
  // In this process: a planted bug is usually caught within a few seeds, far sooner than a worker starts.
  const r = await runSeeds({ from, count, mutation: name, stopAtFirst: true });
  const first = r.failures[0];
  caught.push({ name, caughtAtSeed: first?.seed ?? null, ...(first ? { violation: first.violations[0] } : {}) });
  console.log(`[sim] ${name}: ${first ? `caught at seed ${first.seed}` : 'NOT CAUGHT'} (${r.seedsRun} seeds run, ${((performance.now() - t0) / 1000).toFixed(1)} s)${first ? `: ${first.violations[0]}` : ''}`);
}

const failed = (clean?.failures.length ?? 0) > 0 || caught.some((c) => c.caughtAtSeed === null);
if (values.json) {
  console.log(
    JSON.stringify({
      seeds: count,
      violations: clean?.failures.length ?? 0,
      transactions: clean?.transactions ?? 0,
      crashes: clean?.crashes ?? 0,
      freezes: clean?.freezes ?? 0,
      deadlocksResolved: clean?.deadlocksResolved ?? 0,
      forgeries: clean?.forgeries ?? 0,
      maxSettledAfterHealMs: clean?.maxSettledAfterHealMs ?? 0,
      secondsClean: Number(cleanSeconds.toFixed(1)),
      mutations: caught.map(({ name, caughtAtSeed }) => ({ name, caughtAtSeed })),
    }),
  );
}
process.exit(failed ? 1 : 0);

function progress(total: number): (r: { seed: number }) => void {
  let done = 0;
  return () => {
    done++;
    if (total >= 1000 && done % 1000 === 0) console.error(`[sim] ${done}/${total} seeds`);
  };
}
