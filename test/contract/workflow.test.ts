// One suite, two Step Functions behind the WorkflowPort: the in-memory interpreter
// (src/memory/stepfunctions.ts, on virtual time) and the embedded local service
// (src/local/stepfunctions.ts) through the real Workflow adapter and @aws-sdk/client-sfn.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { executionArn, Workflow } from '../../src/aws/workflow';
import type { WorkflowPort } from '../../src/core/ports';
import type { ExecutionState } from '../../src/core/recovery';
import { LocalStepFunctions } from '../../src/local/stepfunctions';
import { MemoryStepFunctions } from '../../src/memory/stepfunctions';
import { VirtualTimers } from '../../src/memory/timers';

interface Invocation {
  tag: string;
  token: string;
}

/** A callback task with a timeout from the input, whose timeout is caught. */
const DEFINITION = {
  StartAt: 'Prepare',
  States: {
    Prepare: {
      Type: 'Task',
      Resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken',
      Parameters: { FunctionName: 'dispatch', Payload: { 'token.$': '$$.Task.Token', 'tag.$': '$.tag' } },
      TimeoutSecondsPath: '$.timeoutSeconds',
      ResultPath: '$.vote',
      Catch: [{ ErrorEquals: ['States.Timeout'], ResultPath: '$.error', Next: 'TimedOut' }],
      Next: 'Voted',
    },
    Voted: { Type: 'Pass', Parameters: { 'tag.$': '$.tag', 'outcome.$': '$.vote.outcome' }, End: true },
    TimedOut: { Type: 'Pass', Parameters: { 'tag.$': '$.tag', 'error.$': '$.error.Error' }, End: true },
  },
};

interface Side {
  port: WorkflowPort;
  stateMachineArn: string;
  invocations: Invocation[];
  /** Runs (virtual or real) time until `tag` has `n` invocations; answers their tokens. */
  tokens(tag: string, n: number): Promise<string[]>;
  /** Runs time until the execution ends; answers its status and output. */
  ended(arn: string): Promise<{ status: ExecutionState; output: unknown }>;
}

function memorySide(): Side {
  const timers = new VirtualTimers();
  const invocations: Invocation[] = [];
  const sfn = new MemoryStepFunctions({
    timers,
    random: () => 0.5,
    handlers: {
      lambda: async (_fn, payload) => void invocations.push(payload as unknown as Invocation),
      dynamodb: async () => {
        throw new Error('no DynamoDB task here');
      },
    },
  });
  const of = (tag: string) => invocations.filter((i) => i.tag === tag);
  return {
    port: sfn,
    stateMachineArn: sfn.createStateMachine('contract', DEFINITION),
    invocations,
    async tokens(tag, n) {
      await timers.runUntil(() => of(tag).length >= n);
      return of(tag).map((i) => i.token);
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
    invocations: localInvocations,
    tokens: (tag, n) =>
      vi.waitFor(
        () => {
          if (of(tag).length < n) throw new Error(`${of(tag).length} invocations for ${tag}`);
          return of(tag).map((i) => i.token);
        },
        { timeout: 5_000, interval: 20 },
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
    invokeLambda: async (_fn, payload) => void localInvocations.push(payload as Invocation),
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
  it('starts idempotently by name, completes a task by signal, and describes MISSING, RUNNING, SUCCEEDED', async () => {
    const side = make();
    const tag = `${name}-signal`;
    const arn = executionArn(side.stateMachineArn, tag);
    expect(await side.port.describe(arn)).toBe('MISSING');
    await side.port.start(side.stateMachineArn, tag, { tag, timeoutSeconds: 300 });
    await side.port.start(side.stateMachineArn, tag, { tag, timeoutSeconds: 300 });
    const [token] = await side.tokens(tag, 1);
    expect(await side.port.describe(arn)).toBe('RUNNING');
    expect(side.invocations.filter((i) => i.tag === tag)).toHaveLength(1);
    expect(await side.port.signal(`${token!}x`, { outcome: 'COMMIT' })).toBe(false);
    expect(await side.port.signal(token!, { outcome: 'COMMIT' })).toBe(true);
    expect(await side.ended(arn)).toEqual({ status: 'SUCCEEDED', output: { tag, outcome: 'COMMIT' } });
    expect(await side.port.describe(arn)).toBe('SUCCEEDED');
    // Done: its token is gone, and a same-name start starts nothing.
    expect(await side.port.signal(token!, { outcome: 'ABORT' })).toBe(false);
    await side.port.start(side.stateMachineArn, tag, { tag, timeoutSeconds: 300 });
    expect(await side.port.describe(arn)).toBe('SUCCEEDED');
    expect(side.invocations.filter((i) => i.tag === tag)).toHaveLength(1);
  });

  it('times a waiting task out into its Catch; a late signal answers false', async () => {
    const side = make();
    const tag = `${name}-timeout`;
    const arn = executionArn(side.stateMachineArn, tag);
    await side.port.start(side.stateMachineArn, tag, { tag, timeoutSeconds: 1 });
    const [token] = await side.tokens(tag, 1);
    expect(await side.ended(arn)).toEqual({ status: 'SUCCEEDED', output: { tag, error: 'States.Timeout' } });
    expect(await side.port.signal(token!, { outcome: 'COMMIT' })).toBe(false);
  });
});
