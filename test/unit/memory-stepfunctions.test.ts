// The in-memory Step Functions running the REAL definition cdk/workflow.ts synthesizes, on virtual
// time: the paths a transaction takes, the timeouts and retries, and what each costs in transitions.
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { executionArn } from '../../src/aws/workflow';
import { decideArguments, workflowDefinition, WORKFLOW_DISPATCH_ARN, WORKFLOW_TX_TABLE } from '../../src/memory/definition';
import { MemoryStepFunctions, type Json } from '../../src/memory/stepfunctions';
import { VirtualTimers } from '../../src/memory/timers';

interface Invocation {
  atMs: number;
  payload: { txId: string; phase: string; taskToken?: string; result?: unknown };
}

const START_MS = Date.UTC(2026, 10, 30, 12);
let definition: Record<string, Json>;
let timers: VirtualTimers;
let sfn: MemoryStepFunctions;
let arn: string;
let invocations: Invocation[];
/** The log table as Decide and ReadDecision see it: txId -> status. */
let table: Map<string, string>;
let updates: Record<string, Json>[];
/** Errors the next dispatch calls throw, in order. */
let dispatchFailures: Error[];

beforeAll(() => {
  definition = workflowDefinition();
}, 120_000);

beforeEach(() => {
  invocations = [];
  table = new Map();
  updates = [];
  dispatchFailures = [];
  fresh();
});

/** A new service on new virtual time, over the same recorded handlers. */
function fresh(): void {
  timers = new VirtualTimers(START_MS);
  sfn = new MemoryStepFunctions({
    timers,
    random: () => 0.5,
    handlers: {
      lambda: async (fn, payload) => {
        expect(fn).toBe(WORKFLOW_DISPATCH_ARN);
        invocations.push({ atMs: timers.now(), payload: payload as Invocation['payload'] });
        const failure = dispatchFailures.shift();
        if (failure) throw failure;
        return { ok: true };
      },
      dynamodb: async (operation, parameters) => {
        expect(parameters.TableName).toBe(WORKFLOW_TX_TABLE);
        const txId = ((parameters.Key as Record<string, { S: string }>).pk as { S: string }).S;
        if (operation === 'getItem') return { Item: { pk: { S: txId }, status: { S: table.get(txId) ?? 'MISSING' } } };
        expect(operation).toBe('updateItem');
        if (table.get(txId) !== 'PREPARING') throw Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });
        updates.push(parameters);
        table.set(txId, decideArguments(parameters).status);
        return {};
      },
    },
  });
  arn = sfn.createStateMachine('workflow', definition);
}

async function start(txId: string, timeouts = { prepareSeconds: 30, commitSeconds: 30 }): Promise<string> {
  table.set(txId, 'PREPARING');
  await sfn.start(arn, txId, { txId, timeouts });
  return executionArn(arn, txId);
}

/** Runs virtual time until the `n`th dispatch call of `phase` happened; answers it. */
async function dispatched(phase: string, n = 1): Promise<Invocation> {
  const of = () => invocations.filter((i) => i.payload.phase === phase);
  await timers.runUntil(() => of().length >= n);
  return of()[n - 1]!;
}

async function ended(execution: string): Promise<void> {
  await timers.runUntil(() => sfn.execution(execution)!.status !== 'RUNNING');
}

describe('the synthesized workflow in memory', () => {
  it('commits: Prepare signalled COMMIT -> Decide -> Commit signalled -> Finalize -> SUCCEEDED, in 5 transitions', async () => {
    const execution = await start('tx-happy');
    expect(await sfn.describe(execution)).toBe('RUNNING');
    const prepare = await dispatched('PREPARE');
    expect(prepare.payload).toEqual({ txId: 'tx-happy', phase: 'PREPARE', taskToken: expect.any(String) });
    expect(await sfn.signal(prepare.payload.taskToken!, { outcome: 'COMMIT', status: 'COMMITTING', reason: 'all voted YES' })).toBe(true);

    const commit = await dispatched('COMMIT');
    expect(updates).toHaveLength(1);
    expect(decideArguments(updates[0]!)).toMatchObject({ status: 'COMMITTING', at: new Date(timers.now()).toISOString() });
    expect(await sfn.signal(commit.payload.taskToken!, { acked: ['inventory'] })).toBe(true);

    const finalize = await dispatched('FINALIZE');
    expect(finalize.payload).toEqual({ txId: 'tx-happy', phase: 'FINALIZE', result: { acked: ['inventory'] } });
    await ended(execution);
    const described = sfn.execution(execution)!;
    expect(described.status).toBe('SUCCEEDED');
    expect(described.path).toEqual(['Prepare', 'Decide', 'Decided', 'Commit', 'Finalize']);
    expect(described.stateTransitions).toBe(5);
    expect(sfn.stats()).toMatchObject({ executionsStarted: 1, stateTransitions: 5, lambdaInvocations: 3, dynamodbCalls: 1 });
    // A token works once.
    expect(await sfn.signal(prepare.payload.taskToken!, {})).toBe(false);
  });

  it('aborts when Prepare times out: PrepareFailed decides ABORT with the error in the reason', async () => {
    const execution = await start('tx-timeout', { prepareSeconds: 5, commitSeconds: 30 });
    const prepare = await dispatched('PREPARE');
    const abort = await dispatched('ABORT');
    expect(abort.atMs - prepare.atMs).toBe(5_000);
    expect(decideArguments(updates[0]!)).toMatchObject({ status: 'ABORTING', outcome: 'ABORT', reason: 'prepare did not complete: States.Timeout' });
    // The timed-out token is gone.
    expect(await sfn.signal(prepare.payload.taskToken!, { outcome: 'COMMIT' })).toBe(false);
    expect(sfn.execution(execution)!.path).toEqual(['Prepare', 'PrepareFailed', 'Decide', 'Decided', 'Abort']);
  });

  it('reads the decision when Decide loses its condition, and routes by the status it finds', async () => {
    const execution = await start('tx-lost');
    const prepare = await dispatched('PREPARE');
    // Someone else (the client, the deadlock detector) decided ABORT meanwhile.
    table.set('tx-lost', 'ABORTING');
    await sfn.signal(prepare.payload.taskToken!, { outcome: 'COMMIT', status: 'COMMITTING', reason: 'all voted YES' });
    const abort = await dispatched('ABORT');
    await sfn.signal(abort.payload.taskToken!, { acked: [] });
    await ended(execution);
    const described = sfn.execution(execution)!;
    expect(described.status).toBe('SUCCEEDED');
    expect(updates).toHaveLength(0);
    expect(described.path).toEqual(['Prepare', 'Decide', 'ReadDecision', 'RouteByStatus', 'Abort', 'Finalize']);
    expect(sfn.stats().dynamodbCalls).toBe(2);
  });

  it('ends at once when the record is already final (a recovery execution of a finished transaction)', async () => {
    const execution = await start('tx-final');
    table.set('tx-final', 'COMMITTED');
    await sfn.signal((await dispatched('PREPARE')).payload.taskToken!, { outcome: 'COMMIT', status: 'COMMITTING', reason: 'recovered' });
    await ended(execution);
    expect(sfn.execution(execution)!.path).toEqual(['Prepare', 'Decide', 'ReadDecision', 'RouteByStatus', 'Done']);
  });

  it('re-sends phase two after States.Timeout on a jittered, capped backoff, then waits 60 s in CommitBackoff', async () => {
    const execution = await start('tx-retry', { prepareSeconds: 30, commitSeconds: 10 });
    await sfn.signal((await dispatched('PREPARE')).payload.taskToken!, { outcome: 'COMMIT', status: 'COMMITTING', reason: 'yes' });
    const first = await dispatched('COMMIT');
    const before = sfn.execution(execution)!.stateTransitions;
    // 1 + 10 retries, then the Catch to CommitBackoff and one more Commit.
    const twelfth = await dispatched('COMMIT', 12);
    const commits = invocations.filter((i) => i.payload.phase === 'COMMIT');
    const gapsMs = commits.slice(1).map((c, i) => c.atMs - commits[i]!.atMs);
    // Each attempt waits its 10 s timeout, then 1 s x 2^n capped at 60 s, times the jitter draw (0.5).
    const backoffMs = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60].map((s) => s * 500);
    expect(gapsMs).toEqual([...backoffMs.map((b) => 10_000 + b), 10_000 + 60_000]);
    expect(new Set(commits.map((c) => c.payload.taskToken)).size).toBe(12);
    // Every earlier token is gone; the latest works.
    expect(await sfn.signal(first.payload.taskToken!, {})).toBe(false);
    expect(await sfn.signal(twelfth.payload.taskToken!, { acked: ['inventory'] })).toBe(true);
    await ended(execution);
    // 10 retry attempts + CommitBackoff + Commit + Finalize.
    expect(sfn.execution(execution)!.stateTransitions - before).toBe(13);
    expect(sfn.execution(execution)!.status).toBe('SUCCEEDED');
  });

  it('retries a dispatch that could not get its locks (the Lambda error name), with a fresh token', async () => {
    dispatchFailures.push(Object.assign(new Error('lock wait timed out'), { name: 'LockWaitTimeoutError' }));
    await start('tx-locks');
    const first = await dispatched('PREPARE');
    const second = await dispatched('PREPARE', 2);
    expect(second.atMs - first.atMs).toBe(1_000);
    expect(second.payload.taskToken).not.toBe(first.payload.taskToken);
    expect(await sfn.signal(first.payload.taskToken!, {})).toBe(false);
    expect(await sfn.signal(second.payload.taskToken!, { outcome: 'COMMIT', status: 'COMMITTING', reason: 'yes' })).toBe(true);
    await dispatched('COMMIT');
  });

  it('is idempotent by name, and loses every execution and token in a crash', async () => {
    const execution = await start('tx-crash');
    await sfn.start(arn, 'tx-crash', { other: 'input' });
    const prepare = await dispatched('PREPARE');
    expect(invocations).toHaveLength(1);
    expect(sfn.stats().executionsStarted).toBe(1);
    sfn.crash();
    expect(await sfn.describe(execution)).toBe('MISSING');
    expect(await sfn.signal(prepare.payload.taskToken!, { outcome: 'COMMIT' })).toBe(false);
    expect(timers.nextAt()).toBeUndefined();
    // A recovery execution starts afresh.
    await sfn.start(arn, 'tx-crash', { txId: 'tx-crash', timeouts: { prepareSeconds: 30, commitSeconds: 30 } });
    await dispatched('PREPARE', 2);
    expect(await sfn.describe(execution)).toBe('RUNNING');
  });

  it('replays a run exactly from the same inputs and draws', async () => {
    const run = async (): Promise<number[]> => {
      const execution = await start('tx-replay', { prepareSeconds: 3, commitSeconds: 2 });
      await dispatched('ABORT', 4);
      sfn.stop(execution);
      expect(await sfn.describe(execution)).toBe('ABORTED');
      return invocations.map((i) => i.atMs - START_MS);
    };
    const first = await run();
    invocations = [];
    fresh();
    expect(await run()).toEqual(first);
  });
});
