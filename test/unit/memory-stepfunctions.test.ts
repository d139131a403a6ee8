// The in-memory Step Functions running the REAL definition cdk/workflow.ts synthesizes (a group's
// supervisor), on virtual time: Sleep until an absolute time -> Supervise -> Route -> Sleep ...
// -> Done, the retries and the Backoff a failing run gets, and what each costs in transitions.
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { executionArn } from '../../src/aws/workflow';
import { workflowDefinition, WORKFLOW_SUPERVISE_ARN } from '../../src/memory/definition';
import { MemoryStepFunctions, type Json } from '../../src/memory/stepfunctions';
import { VirtualTimers } from '../../src/memory/timers';

interface Run {
  atMs: number;
  payload: Record<string, Json>;
}

const START_MS = Date.UTC(2026, 10, 30, 12);
const iso = (ms: number) => new Date(ms).toISOString();
/** A start's first look in the past: the first run comes at once. */
const AT_ONCE = iso(0);
let definition: Record<string, Json>;
let timers: VirtualTimers;
let sfn: MemoryStepFunctions;
let arn: string;
let runs: Run[];
/** What the next Supervise runs answer (or throw), in order; when empty: done. */
let script: ((payload: Record<string, Json>) => Json | Promise<Json>)[];

beforeAll(() => {
  definition = workflowDefinition();
}, 120_000);

beforeEach(() => {
  runs = [];
  script = [];
  fresh();
});

/** A new service on new virtual time, over the same recorded Supervise function. */
function fresh(): void {
  timers = new VirtualTimers(START_MS);
  sfn = new MemoryStepFunctions({
    timers,
    random: () => 0.5,
    handlers: {
      lambda: async (fn, payload) => {
        expect(fn).toBe(WORKFLOW_SUPERVISE_ARN);
        runs.push({ atMs: timers.now(), payload: payload as Record<string, Json> });
        const next = script.shift();
        return next ? next(payload as Record<string, Json>) : { ...(payload as Record<string, Json>), done: true, wakeAt: iso(timers.now()) };
      },
      dynamodb: async () => {
        throw new Error('the supervisor has no DynamoDB task');
      },
    },
  });
  arn = sfn.createStateMachine('dtc-supervisor', definition);
}

/** A run that asks to be woken at `wakeMs` (epoch ms), carrying its state on. */
const sleepUntil = (wakeMs: number) => (payload: Record<string, Json>) => ({ group: payload.group!, gen: payload.gen!, runs: Number(payload.runs ?? 0) + 1, done: false, wakeAt: iso(wakeMs) });
const fail = (name: string) => () => {
  throw Object.assign(new Error(`${name} for the test`), { name });
};

async function ended(execution: string): Promise<void> {
  await timers.runUntil(() => sfn.execution(execution)!.status !== 'RUNNING');
}

describe("the synthesized supervisor's state machine in memory", () => {
  it('is Sleep -> Supervise -> Route -> Sleep ... -> Done: no run at the start, three transitions a run, no callbacks', async () => {
    expect(Object.keys(definition.States as object).sort()).toEqual(['Backoff', 'Done', 'Malformed', 'Route', 'Sleep', 'Supervise']);
    expect(definition.StartAt).toBe('Sleep');
    script = [sleepUntil(START_MS + 65_000)];
    // Started with its first look (the bucket's close, say): it sleeps until then before its first run.
    await sfn.start(arn, 'g-1-10-0', { group: 'g-1-10-0', gen: 0, wakeAt: iso(START_MS + 10_000) });
    const execution = executionArn(arn, 'g-1-10-0');
    await ended(execution);
    const described = sfn.execution(execution)!;
    expect(described.status).toBe('SUCCEEDED');
    expect(described.path).toEqual(['Sleep', 'Supervise', 'Route', 'Sleep', 'Supervise', 'Route', 'Done']);
    expect(described.stateTransitions).toBe(7);
    expect(sfn.stats()).toMatchObject({ executionsStarted: 1, stateTransitions: 7, lambdaInvocations: 2, callbacks: 0, dynamodbCalls: 0 });
    expect(runs.map((r) => r.atMs - START_MS)).toEqual([10_000, 65_000]);
    // Each run's output is the next run's input: the execution's state.
    expect(runs.map((r) => r.payload)).toEqual([
      { group: 'g-1-10-0', gen: 0, wakeAt: iso(START_MS + 10_000) },
      { group: 'g-1-10-0', gen: 0, runs: 1, done: false, wakeAt: iso(START_MS + 65_000) },
    ]);
  });

  it('sleeps until the absolute wake time the run asked for (TimestampPath), and runs at once for a time already past', async () => {
    script = [sleepUntil(START_MS + 12_345), sleepUntil(START_MS + 1_000)];
    await sfn.start(arn, 'g-2-10-0', { group: 'g-2-10-0', gen: 0, wakeAt: AT_ONCE });
    await ended(executionArn(arn, 'g-2-10-0'));
    expect(runs.map((r) => r.atMs - START_MS)).toEqual([0, 12_345, 12_345]);
  });

  it('retries a failing run with jittered backoff, then backs off 30 s with its state kept, for ever', async () => {
    script = [sleepUntil(START_MS + 1_000), fail('Error'), fail('Error'), fail('Error'), fail('Error'), fail('Error'), sleepUntil(START_MS + 100_000)];
    await sfn.start(arn, 'g-3-10-0', { group: 'g-3-10-0', gen: 0, wakeAt: AT_ONCE });
    const execution = executionArn(arn, 'g-3-10-0');
    await ended(execution);
    const at = runs.map((r) => r.atMs - START_MS);
    // 2 s x 2^n, times the jitter draw (0.5): 1, 2, 4, 8 s; then Backoff's 30 s.
    expect(at.slice(0, 7)).toEqual([0, 1_000, 2_000, 4_000, 8_000, 16_000, 46_000]);
    // The run after the Backoff gets the state the failing run got, with the error beside it.
    expect(runs[6]!.payload).toMatchObject({ group: 'g-3-10-0', gen: 0, runs: 1, wakeAt: iso(START_MS + 1_000), error: { Error: 'Error' } });
    expect(sfn.execution(execution)!.path).toEqual(['Sleep', 'Supervise', 'Route', 'Sleep', 'Supervise', 'Backoff', 'Supervise', 'Route', 'Sleep', 'Supervise', 'Route', 'Done']);
    expect(sfn.execution(execution)!.status).toBe('SUCCEEDED');
  });

  it('times a run out after 60 s and retries it', async () => {
    script = [() => new Promise<Json>(() => undefined)];
    await sfn.start(arn, 'g-4-10-0', { group: 'g-4-10-0', gen: 0, wakeAt: AT_ONCE });
    await ended(executionArn(arn, 'g-4-10-0'));
    expect(runs.map((r) => r.atMs - START_MS)).toEqual([0, 61_000]);
  });

  it('is idempotent by name and input, and loses every execution in a crash', async () => {
    script = [sleepUntil(START_MS + 60_000)];
    expect(await sfn.start(arn, 'g-5-10-0', { group: 'g-5-10-0', gen: 0, wakeAt: AT_ONCE })).toBe('started');
    expect(await sfn.start(arn, 'g-5-10-0', { group: 'g-5-10-0', gen: 0, wakeAt: AT_ONCE })).toBe('started');
    expect(await sfn.start(arn, 'g-5-10-0', { group: 'g-5-10-0', gen: 1, wakeAt: AT_ONCE })).toBe('exists');
    await timers.runUntil(() => runs.length >= 1);
    expect(sfn.stats().executionsStarted).toBe(1);
    const execution = executionArn(arn, 'g-5-10-0');
    expect(await sfn.describe(execution)).toBe('RUNNING');
    sfn.crash();
    expect(await sfn.describe(execution)).toBe('MISSING');
    expect(timers.nextAt()).toBeUndefined();
    // After the crash the name is free again.
    expect(await sfn.start(arn, 'g-5-10-0', { group: 'g-5-10-0', gen: 0, wakeAt: AT_ONCE })).toBe('started');
    await timers.runUntil(() => runs.length >= 2);
    expect(await sfn.describe(execution)).toBe('SUCCEEDED');
  });

  it('replays a run exactly from the same inputs and draws', async () => {
    const run = async (): Promise<number[]> => {
      script = [sleepUntil(START_MS + 3_000), fail('Error'), sleepUntil(START_MS + 9_000), fail('Lambda.ServiceException'), sleepUntil(START_MS + 20_000)];
      await sfn.start(arn, 'g-6-10-0', { group: 'g-6-10-0', gen: 0, wakeAt: AT_ONCE });
      await ended(executionArn(arn, 'g-6-10-0'));
      return runs.map((r) => r.atMs - START_MS);
    };
    const first = await run();
    runs = [];
    fresh();
    expect(await run()).toEqual(first);
    expect(first).toHaveLength(6);
  });
});
