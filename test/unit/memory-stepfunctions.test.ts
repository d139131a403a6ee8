// The in-memory Step Functions running the REAL supervisor definition cdk/workflow.ts synthesizes, on
// virtual time: the Supervise -> Route -> Sleep loop, the Lambda invoke integration's Payload and
// `$.Payload` output, retries and the Backoff catch, task timeouts, idempotent starts by name, and
// what each costs in transitions.
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { executionArn } from '../../src/aws/workflow';
import { MemoryStepFunctions, type Json } from '../../src/memory/stepfunctions';
import { VirtualTimers } from '../../src/memory/timers';
import { supervisorDefinition, type SupervisorDefinition } from '../sim/definition';

const START_MS = Date.UTC(2026, 10, 30, 12);
let supervisor: SupervisorDefinition;
let timers: VirtualTimers;
let sfn: MemoryStepFunctions;
let arn: string;
let random: number;
/** Each invocation of the supervise function: when, and the payload it got. */
let invocations: { atMs: number; payload: Record<string, Json> }[];
/** What the supervise function does with a payload (default: one more run, awake again in 5 s). */
let answer: (payload: Record<string, Json>, n: number) => Promise<unknown>;

beforeAll(async () => {
  supervisor = await supervisorDefinition();
}, 120_000);

beforeEach(() => {
  invocations = [];
  random = 0.5;
  answer = async (payload) => nextRun(payload, false, 5_000);
  fresh();
});

/** A new service on new virtual time, over the same recorded function. */
function fresh(): void {
  timers = new VirtualTimers(START_MS);
  sfn = new MemoryStepFunctions({
    timers,
    random: () => random,
    handlers: {
      lambda: async (fn, payload) => {
        expect(fn).toBe(supervisor.superviseArn);
        invocations.push({ atMs: timers.now(), payload: payload as Record<string, Json> });
        return answer(payload as Record<string, Json>, invocations.length);
      },
    },
  });
  arn = sfn.createStateMachine('supervisors', supervisor.definition);
}

/** What superviseRun answers: the state, one more run, done or not, and when to wake. */
function nextRun(state: Record<string, Json>, done: boolean, wakeInMs: number): Record<string, Json> {
  return { group: state.group!, gen: state.gen!, runs: Number(state.runs ?? 0) + 1, lastRunAt: timers.now(), done, wakeAt: new Date(timers.now() + wakeInMs).toISOString(), report: { members: 0 } };
}

const lambdaError = (name: string, message = 'boom'): Error => Object.assign(new Error(message), { name });

async function ended(execution: string): Promise<void> {
  await timers.runUntil(() => sfn.execution(execution)!.status !== 'RUNNING');
}

describe('the synthesized supervisor definition in memory', () => {
  it('supervises until done: the payload is the state, the output is $.Payload, and Sleep waits until wakeAt', async () => {
    answer = async (payload, n) => nextRun(payload, n === 3, 5_000);
    expect(await sfn.start(arn, 'g-100-10-3', { group: 'g-100-10-3', gen: 0 })).toBe('started');
    const execution = executionArn(arn, 'g-100-10-3');
    await ended(execution);
    const described = sfn.execution(execution)!;
    expect(described.status).toBe('SUCCEEDED');
    expect(described.path).toEqual(['Supervise', 'Route', 'Sleep', 'Supervise', 'Route', 'Sleep', 'Supervise', 'Route', 'Done']);
    expect(described.stateTransitions).toBe(9);
    expect(sfn.stats()).toMatchObject({ executionsStarted: 1, stateTransitions: 9, lambdaInvocations: 3, dynamodbCalls: 0, callbacks: 0 });
    // The first payload is the execution's input; each later one is the previous run's answer, whole
    // (not the Lambda integration's envelope: OutputPath $.Payload unwrapped it).
    expect(invocations[0]!.payload).toEqual({ group: 'g-100-10-3', gen: 0 });
    expect(invocations[1]!.payload).toMatchObject({ group: 'g-100-10-3', gen: 0, runs: 1, done: false, report: { members: 0 } });
    expect(invocations[1]!.payload).not.toHaveProperty('Payload');
    expect(invocations[2]!.payload).toMatchObject({ runs: 2 });
    // Sleep waits until the absolute time the run named.
    expect(invocations.map((i) => i.atMs - START_MS)).toEqual([0, 5_000, 10_000]);
    expect(described.output).toMatchObject({ runs: 3, done: true });
  });

  it('runs again at once when wakeAt has already passed', async () => {
    answer = async (payload, n) => nextRun(payload, n === 2, -60_000);
    await sfn.start(arn, 'g-past', { group: 'g-past', gen: 0 });
    await ended(executionArn(arn, 'g-past'));
    expect(invocations.map((i) => i.atMs - START_MS)).toEqual([0, 0]);
  });

  it('retries a failed run with full jitter (2 s x 2^n x the draw), then backs off 30 s keeping the state and the error', async () => {
    random = 0.25;
    answer = async (payload, n) => {
      if (n <= 6) throw lambdaError(n === 1 ? 'Runtime.ExitError' : 'ProvisionedThroughputExceededException');
      return nextRun(payload, true, 0);
    };
    await sfn.start(arn, 'g-flaky', { group: 'g-flaky', gen: 2, runs: 7 });
    const execution = executionArn(arn, 'g-flaky');
    await ended(execution);
    const gaps = invocations.slice(1).map((inv, i) => inv.atMs - invocations[i]!.atMs);
    // Attempt 1 and 4 retries (States.TaskFailed matches any function error), then the Catch: Backoff
    // 30 s, Supervise again (attempt 6 fails, retried after 2 s x 0.25), and the 7th succeeds.
    expect(gaps).toEqual([500, 1_000, 2_000, 4_000, 30_000, 500]);
    expect(sfn.execution(execution)!.path).toEqual(['Supervise', 'Backoff', 'Supervise', 'Route', 'Done']);
    // The state survives the Catch; the error rides along in $.error.
    expect(invocations[5]!.payload).toMatchObject({ group: 'g-flaky', gen: 2, runs: 7, error: { Error: 'ProvisionedThroughputExceededException' } });
    expect(JSON.parse(String((invocations[5]!.payload.error as Record<string, Json>).Cause))).toEqual({ errorType: 'ProvisionedThroughputExceededException', errorMessage: 'boom' });
    expect(sfn.execution(execution)!.status).toBe('SUCCEEDED');
  });

  it('times a run out after 60 s (States.Timeout) and retries it', async () => {
    answer = async (payload, n) => (n === 1 ? new Promise(() => undefined) : nextRun(payload, true, 0));
    await sfn.start(arn, 'g-slow', { group: 'g-slow', gen: 0 });
    await ended(executionArn(arn, 'g-slow'));
    expect(invocations.map((i) => i.atMs - START_MS)).toEqual([0, 60_000 + 1_000]);
  });

  it('starts by name idempotently: the same name and input while running is that execution; anything else exists', async () => {
    answer = async (payload) => nextRun(payload, false, 60_000);
    expect(await sfn.start(arn, 'g-once', { group: 'g-once', gen: 0 })).toBe('started');
    expect(await sfn.start(arn, 'g-once', { group: 'g-once', gen: 0 })).toBe('started');
    expect(await sfn.start(arn, 'g-once', { group: 'g-once', gen: 1 })).toBe('exists');
    await timers.runUntil(() => invocations.length === 1);
    expect(sfn.stats().executionsStarted).toBe(1);
    // Closed: the name stays taken.
    sfn.stop(executionArn(arn, 'g-once'));
    expect(await sfn.describe(executionArn(arn, 'g-once'))).toBe('ABORTED');
    expect(await sfn.start(arn, 'g-once', { group: 'g-once', gen: 0 })).toBe('exists');
  });

  it('loses every execution in a crash (describe: MISSING), after which the name starts afresh', async () => {
    answer = async (payload) => nextRun(payload, false, 60_000);
    await sfn.start(arn, 'g-lost', { group: 'g-lost', gen: 0 });
    await timers.runUntil(() => invocations.length === 1);
    sfn.crash();
    expect(await sfn.describe(executionArn(arn, 'g-lost'))).toBe('MISSING');
    expect(sfn.running()).toEqual([]);
    // The pending Sleep is gone with it: nothing is left to run.
    expect(timers.nextAt()).toBeUndefined();
    expect(await sfn.start(arn, 'g-lost', { group: 'g-lost', gen: 0 })).toBe('started');
    await timers.runUntil(() => invocations.length === 2);
    expect(await sfn.describe(executionArn(arn, 'g-lost'))).toBe('RUNNING');
  });

  it('replays a run exactly from the same inputs and draws', async () => {
    const run = async (): Promise<number[]> => {
      random = 0.7;
      answer = async (payload, n) => {
        if (n % 3 === 0) throw lambdaError('Error');
        return nextRun(payload, n >= 8, 1_000 * n);
      };
      await sfn.start(arn, 'g-replay', { group: 'g-replay', gen: 0 });
      await ended(executionArn(arn, 'g-replay'));
      return invocations.map((i) => i.atMs - START_MS);
    };
    const first = await run();
    invocations = [];
    fresh();
    expect(await run()).toEqual(first);
    expect(first).toHaveLength(8);
  });
});
