// One suite, two Step Functions behind the WorkflowPort: the in-memory interpreter
// (src/memory/stepfunctions.ts, on virtual time) and the embedded local service
// (src/local/stepfunctions.ts) through the real Workflow adapter and @aws-sdk/client-sfn. What the
// supervisors rely on: a start is idempotent by name and input while the execution runs ('started'),
// a name taken by another input or a closed execution answers 'exists', describe reports the state,
// and a Wait on an absolute timestamp (TimestampPath) wakes at that time. No callbacks.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { executionArn, Workflow } from '../../src/aws/workflow';
import type { WorkflowPort } from '../../src/core/ports';
import type { ExecutionState } from '../../src/core/recovery';
import { LocalStepFunctions } from '../../src/local/stepfunctions';
import { MemoryStepFunctions } from '../../src/memory/stepfunctions';
import { VirtualTimers } from '../../src/memory/timers';

/** The supervisor's shape in small: Run -> Route -> Sleep (until an absolute time) -> Run ... -> Done. */
const DEFINITION = {
  StartAt: 'Run',
  States: {
    Run: {
      Type: 'Task',
      Resource: 'arn:aws:states:::lambda:invoke',
      Parameters: { FunctionName: 'run', 'Payload.$': '$' },
      OutputPath: '$.Payload',
      TimeoutSeconds: 10,
      Next: 'Route',
    },
    Route: { Type: 'Choice', Choices: [{ Variable: '$.done', BooleanEquals: true, Next: 'Done' }], Default: 'Sleep' },
    Sleep: { Type: 'Wait', TimestampPath: '$.wakeAt', Next: 'Run' },
    Done: { Type: 'Succeed' },
  },
};

interface RunInput {
  tag: string;
  runs?: number;
  /** Runs before the execution ends (done); absent: it never ends by itself. */
  stopAfter?: number;
  /** How far after each run the next one is asked for. */
  sleepMs: number;
  fail?: boolean;
}
interface Invocation {
  tag: string;
  atMs: number;
  /** The wake time the previous run asked for, if any. */
  askedFor?: number;
}

/** The Run function: counts runs, asks to be woken `sleepMs` later by its own clock, ends after `stopAfter`. */
function runFunction(invocations: Invocation[], now: () => number) {
  return async (_fn: string, payload: unknown): Promise<unknown> => {
    const input = payload as RunInput & { wakeAt?: string };
    invocations.push({ tag: input.tag, atMs: now(), ...(input.wakeAt ? { askedFor: Date.parse(input.wakeAt) } : {}) });
    if (input.fail) throw Object.assign(new Error('the run failed'), { name: 'RunFailed' });
    const runs = (input.runs ?? 0) + 1;
    const { wakeAt: _previous, ...rest } = input;
    return { ...rest, runs, done: input.stopAfter !== undefined && runs >= input.stopAfter, wakeAt: new Date(now() + input.sleepMs).toISOString() };
  };
}

interface Side {
  port: WorkflowPort;
  stateMachineArn: string;
  invocations(tag: string): Invocation[];
  /** Runs (virtual or real) time until `tag` has `n` invocations. */
  runs(tag: string, n: number): Promise<Invocation[]>;
  /** Runs time until the execution ends; answers its status and output. */
  ended(arn: string): Promise<{ status: ExecutionState; output: unknown }>;
  /** Whether this side's clock is exact (virtual) or real. */
  exact: boolean;
}

function memorySide(): Side {
  const timers = new VirtualTimers();
  const invocations: Invocation[] = [];
  const sfn = new MemoryStepFunctions({
    timers,
    random: () => 0.5,
    handlers: {
      lambda: runFunction(invocations, () => timers.now()),
      dynamodb: async () => {
        throw new Error('no DynamoDB task here');
      },
    },
  });
  const of = (tag: string) => invocations.filter((i) => i.tag === tag);
  return {
    port: sfn,
    stateMachineArn: sfn.createStateMachine('contract', DEFINITION),
    invocations: of,
    exact: true,
    async runs(tag, n) {
      await timers.runUntil(() => of(tag).length >= n);
      return of(tag);
    },
    async ended(arn) {
      await timers.runUntil(() => sfn.execution(arn)?.status !== 'RUNNING');
      const e = sfn.execution(arn)!;
      return { status: e.status, output: e.output };
    },
  };
}

let local: LocalStepFunctions;
let sfnClient: SFNClient;
const localInvocations: Invocation[] = [];
let localRuns = 0;

function localSide(): Side {
  const of = (tag: string) => localInvocations.filter((i) => i.tag === tag);
  return {
    port: new Workflow(sfnClient),
    stateMachineArn: local.createStateMachine(`contract-${localRuns++}`, DEFINITION),
    invocations: of,
    exact: false,
    runs: (tag, n) =>
      vi.waitFor(
        () => {
          if (of(tag).length < n) throw new Error(`${of(tag).length} invocations for ${tag}`);
          return of(tag);
        },
        { timeout: 10_000, interval: 20 },
      ),
    async ended(arn) {
      const e = await local.waitForExecution(arn, 10_000);
      return { status: e.status, output: e.output === undefined ? undefined : JSON.parse(e.output) };
    },
  };
}

beforeAll(async () => {
  local = new LocalStepFunctions({
    // No DynamoDB task in this definition: a client that is never called.
    dynamodb: new DynamoDBClient({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }),
    invokeLambda: runFunction(localInvocations, () => Date.now()),
  });
  const { endpoint } = await local.listen();
  sfnClient = new SFNClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
});

afterAll(async () => {
  await local?.close();
  sfnClient?.destroy();
});

describe.each([
  ['memory', memorySide],
  ['local', localSide],
] as const)('WorkflowPort: %s', (name, make) => {
  it("starts once by name: the same input while it runs is 'started' and nothing new, another input or a closed execution 'exists'", async () => {
    const side = make();
    const tag = `${name}-idempotent`;
    const input: RunInput = { tag, stopAfter: 2, sleepMs: 300 };
    const arn = executionArn(side.stateMachineArn, tag);
    expect(await side.port.describe(arn)).toBe('MISSING');
    expect(await side.port.start(side.stateMachineArn, tag, input)).toBe('started');
    expect(await side.port.start(side.stateMachineArn, tag, input)).toBe('started');
    expect(await side.port.start(side.stateMachineArn, tag, { ...input, sleepMs: 1 })).toBe('exists');
    await side.runs(tag, 1);
    expect(await side.port.describe(arn)).toBe('RUNNING');
    expect(await side.port.start(side.stateMachineArn, tag, input)).toBe('started');
    expect(await side.ended(arn)).toEqual({ status: 'SUCCEEDED', output: expect.objectContaining({ tag, runs: 2, done: true }) });
    // One execution ran, whatever the number of starts: two runs, not four.
    expect(side.invocations(tag)).toHaveLength(2);
    expect(await side.port.describe(arn)).toBe('SUCCEEDED');
    expect(await side.port.start(side.stateMachineArn, tag, input)).toBe('exists');
    expect(await side.port.describe(arn)).toBe('SUCCEEDED');
    expect(side.invocations(tag)).toHaveLength(2);
  });

  it('sleeps until the absolute time the run asked for (TimestampPath), not before', async () => {
    const side = make();
    const tag = `${name}-sleep`;
    await side.port.start(side.stateMachineArn, tag, { tag, stopAfter: 3, sleepMs: 400 } satisfies RunInput);
    const runs = await side.runs(tag, 3);
    for (const run of runs.slice(1)) {
      expect(run.askedFor).toBeDefined();
      if (side.exact) expect(run.atMs).toBe(run.askedFor);
      else expect(run.atMs).toBeGreaterThanOrEqual(run.askedFor! - 5);
    }
    expect((await side.ended(executionArn(side.stateMachineArn, tag))).status).toBe('SUCCEEDED');
  });

  it('describes a failed execution as FAILED, and a same-name start of it as exists', async () => {
    const side = make();
    const tag = `${name}-fail`;
    const input: RunInput = { tag, sleepMs: 1, fail: true };
    const arn = executionArn(side.stateMachineArn, tag);
    expect(await side.port.start(side.stateMachineArn, tag, input)).toBe('started');
    expect((await side.ended(arn)).status).toBe('FAILED');
    expect(await side.port.describe(arn)).toBe('FAILED');
    expect(await side.port.start(side.stateMachineArn, tag, input)).toBe('exists');
  });
});
