// The embedded Step Functions, driven the way Lambda code drives AWS: through @aws-sdk/client-sfn
// against listen(), with DynamoDB integrations against dynalite.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  DescribeExecutionCommand,
  ListExecutionsCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { LocalStepFunctions } from '../../src/local/stepfunctions';
import { type LocalAws, startLocalAws } from '../support/aws';
import { pause } from '../support/fixtures';

interface Invocation {
  fn: string;
  payload: Record<string, unknown>;
}

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const invocations: Invocation[] = [];
const failures = new Map<string, Error>();

let aws: LocalAws;
let txTable: string;
let ddb: DynamoDBClient;
let local: LocalStepFunctions;
let sfn: SFNClient;

const CALLBACK = 'arn:aws:states:::lambda:invoke.waitForTaskToken';

/** A Task that hands its token to the `dispatch` Lambda and waits. */
function callbackTask(extra: Record<string, unknown> = {}, payload: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    Type: 'Task',
    Resource: CALLBACK,
    Parameters: { FunctionName: 'dispatch', Payload: { 'token.$': '$$.Task.Token', 'retry.$': '$$.State.RetryCount', ...payload } },
    ...extra,
  };
}

function invocationsOf(tag: string): Invocation[] {
  return invocations.filter((i) => i.payload.tag === tag);
}

async function tokensFor(tag: string, count: number): Promise<string[]> {
  return vi.waitFor(
    () => {
      const found = invocationsOf(tag);
      if (found.length < count) throw new Error(`only ${found.length} invocations for ${tag}`);
      return found.map((i) => i.payload.token as string);
    },
    { timeout: 5000, interval: 20 },
  );
}

async function start(stateMachineArn: string, input: unknown, name?: string): Promise<string> {
  const out = await sfn.send(new StartExecutionCommand({ stateMachineArn, input: JSON.stringify(input), ...(name ? { name } : {}) }));
  return out.executionArn!;
}

async function sdkError(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    return (err as Error).name;
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  aws = await startLocalAws({ tables: ['log'] });
  ddb = aws.dynamodb;
  txTable = aws.tables.log;
  local = new LocalStepFunctions({
    dynamodb: ddb,
    invokeLambda: async (fn, payload) => {
      invocations.push({ fn, payload: payload as Record<string, unknown> });
      const failure = failures.get(fn);
      if (failure) throw failure;
      return { seen: payload };
    },
  });
  const { endpoint } = await local.listen();
  expect(endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  sfn = new SFNClient({ endpoint, region: 'us-east-1', credentials });
});

afterAll(async () => {
  await local?.close();
  sfn?.destroy();
  await aws?.stop();
});

describe('task tokens', () => {
  it('completes a waitForTaskToken task via SendTaskSuccess and hands the output to the next state', async () => {
    const arn = local.createStateMachine('callback', {
      StartAt: 'Prepare',
      States: {
        Prepare: { ...callbackTask({}, { tag: 'basic', 'txId.$': '$.txId' }), ResultPath: '$.vote', Next: 'Decide' },
        Decide: { Type: 'Pass', Parameters: { 'outcome.$': '$.vote.outcome', 'txId.$': '$.txId' }, End: true },
      },
    });
    const executionArn = await start(arn, { txId: 't1' });
    const [token] = await tokensFor('basic', 1);
    expect(invocationsOf('basic')[0]!.payload.txId).toBe('t1');
    await sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify({ outcome: 'COMMIT' }) }));
    await local.waitForExecution(executionArn, 5000);
    const described = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    expect(described.status).toBe('SUCCEEDED');
    expect(JSON.parse(described.output!)).toEqual({ outcome: 'COMMIT', txId: 't1' });
    expect(described.startDate).toBeInstanceOf(Date);
    expect(described.stopDate!.getTime()).toBeGreaterThanOrEqual(described.startDate!.getTime());
  });

  it('gives concurrent tasks different tokens, and a token works only once', async () => {
    const arn = local.createStateMachine('concurrent', { StartAt: 'Wait', States: { Wait: { ...callbackTask({}, { tag: 'pair' }), End: true } } });
    const [a, b] = await Promise.all([start(arn, { n: 1 }), start(arn, { n: 2 })]);
    const tokens = await tokensFor('pair', 2);
    expect(new Set(tokens).size).toBe(2);
    for (const token of tokens) await sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{"ok":true}' }));
    expect(await sdkError(sfn.send(new SendTaskSuccessCommand({ taskToken: tokens[0], output: '{}' })))).toBe('TaskDoesNotExist');
    expect(await sdkError(sfn.send(new SendTaskSuccessCommand({ taskToken: 'not-a-token', output: '{}' })))).toBe('InvalidToken');
    expect(await sdkError(sfn.send(new SendTaskSuccessCommand({ taskToken: `${tokens[1]!.split('.')[0]}.forged`, output: '{}' })))).toBe('InvalidToken');
    for (const executionArn of [a, b]) expect((await local.waitForExecution(executionArn, 5000)).status).toBe('SUCCEEDED');
  });

  it('times a task out from TimeoutSecondsPath on the state input; Catch sees States.Timeout; a late callback gets TaskTimedOut', async () => {
    const arn = local.createStateMachine('timeout-path', {
      StartAt: 'Prepare',
      States: {
        Prepare: {
          // The timeout lives outside both InputPath and Parameters: AWS reads it from the raw state input.
          ...callbackTask({ InputPath: '$.request', TimeoutSecondsPath: '$.timeoutSeconds' }, { tag: 'timeout', 'v.$': '$.v' }),
          Catch: [
            { ErrorEquals: ['States.TaskFailed'], Next: 'WrongCatcher' },
            { ErrorEquals: ['States.Timeout'], ResultPath: '$.error', Next: 'TimedOut' },
          ],
          End: true,
        },
        WrongCatcher: { Type: 'Fail', Error: 'Wrong', Cause: 'States.TaskFailed must not match a timeout' },
        TimedOut: { Type: 'Pass', End: true },
      },
    });
    const executionArn = await start(arn, { timeoutSeconds: 1, request: { v: 42 } });
    const [token] = await tokensFor('timeout', 1);
    expect(invocationsOf('timeout')[0]!.payload.v).toBe(42);
    const ended = await local.waitForExecution(executionArn, 5000);
    expect(ended.status).toBe('SUCCEEDED');
    const output = JSON.parse(ended.output!) as { error: { Error: string } };
    expect(output.error.Error).toBe('States.Timeout');
    expect(ended.stopDate!.getTime() - ended.startDate.getTime()).toBeGreaterThanOrEqual(900);
    expect(await sdkError(sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{}' })))).toBe('TaskTimedOut');
  });

  it('retries a timed-out task with a new token', async () => {
    const arn = local.createStateMachine('retry-timeout', {
      StartAt: 'Prepare',
      States: {
        Prepare: {
          ...callbackTask({ TimeoutSeconds: 1 }, { tag: 'retry' }),
          Retry: [{ ErrorEquals: ['States.Timeout'], IntervalSeconds: 1, MaxAttempts: 1 }],
          End: true,
        },
      },
    });
    const before = local.stats();
    const executionArn = await start(arn, {});
    const [first, second] = await tokensFor('retry', 2);
    expect(second).not.toBe(first);
    expect(invocationsOf('retry').map((i) => i.payload.retry)).toEqual([0, 1]);
    expect(await sdkError(sfn.send(new SendTaskSuccessCommand({ taskToken: first, output: '{}' })))).toBe('TaskTimedOut');
    await sfn.send(new SendTaskSuccessCommand({ taskToken: second, output: '{"attempt":2}' }));
    const ended = await local.waitForExecution(executionArn, 5000);
    expect(ended.status).toBe('SUCCEEDED');
    expect(JSON.parse(ended.output!)).toEqual({ attempt: 2 });
    // One state entered plus one retry attempt.
    expect(local.stats().stateTransitions - before.stateTransitions).toBe(2);
  });

  it('keeps a task alive while heartbeats arrive and fails it with States.HeartbeatTimeout when they stop', async () => {
    const arn = local.createStateMachine('heartbeat', {
      StartAt: 'Prepare',
      States: {
        Prepare: {
          ...callbackTask({ HeartbeatSecondsPath: '$.heartbeat', TimeoutSeconds: 10 }, { 'tag.$': '$.tag' }),
          // States.Timeout covers heartbeat timeouts too, as AWS documents.
          Catch: [{ ErrorEquals: ['States.Timeout'], ResultPath: '$.error', Next: 'Lost' }],
          End: true,
        },
        Lost: { Type: 'Pass', End: true },
      },
    });
    const alive = await start(arn, { heartbeat: 1, tag: 'beating' });
    const silent = await start(arn, { heartbeat: 1, tag: 'silent' });
    const [aliveToken] = await tokensFor('beating', 1);
    const [silentToken] = await tokensFor('silent', 1);
    // Beat `alive` every 400 ms until `silent`, with the same 1 s heartbeat timeout, has timed out:
    // from then on `alive` running is down to its heartbeats, not to a timer that has yet to fire.
    for (let beats = 0; beats < 4 || local.describeExecution(silent).status === 'RUNNING'; beats++) {
      if (beats >= 25) throw new Error('the silent task never timed out');
      await pause(400);
      await sfn.send(new SendTaskHeartbeatCommand({ taskToken: aliveToken }));
    }
    expect(local.describeExecution(alive).status).toBe('RUNNING');
    await sfn.send(new SendTaskSuccessCommand({ taskToken: aliveToken, output: '{"alive":true}' }));
    const aliveEnd = await local.waitForExecution(alive, 5000);
    expect(aliveEnd.status).toBe('SUCCEEDED');
    expect(JSON.parse(aliveEnd.output!)).toEqual({ alive: true });
    expect(aliveEnd.stopDate!.getTime() - aliveEnd.startDate.getTime()).toBeGreaterThan(1500);

    const silentEnd = await local.waitForExecution(silent, 5000);
    expect(JSON.parse(silentEnd.output!).error.Error).toBe('States.HeartbeatTimeout');
    expect(await sdkError(sfn.send(new SendTaskHeartbeatCommand({ taskToken: silentToken })))).toBe('TaskTimedOut');
  });
});

describe('service integrations', () => {
  it('runs DynamoDB conditional writes, catches ConditionalCheckFailedException and writes $$.State.EnteredTime', async () => {
    const key = { pk: { 'S.$': '$.id' } };
    const arn = local.createStateMachine('dynamo', {
      StartAt: 'Log',
      States: {
        Log: {
          Type: 'Task',
          Resource: 'arn:aws:states:::dynamodb:putItem',
          Parameters: {
            TableName: txTable,
            Item: { pk: { 'S.$': '$.id' }, status: { S: 'PREPARING' }, since: { 'S.$': '$$.State.EnteredTime' }, by: { 'S.$': '$$.State.Name' } },
            ConditionExpression: 'attribute_not_exists(pk)',
          },
          ResultPath: null,
          Next: 'Decide',
        },
        Decide: {
          Type: 'Task',
          Resource: 'arn:aws:states:::dynamodb:updateItem',
          Parameters: {
            TableName: txTable,
            Key: key,
            UpdateExpression: 'SET #s = :next',
            ConditionExpression: '#s = :expected',
            ExpressionAttributeNames: { '#s': 'status' },
            ExpressionAttributeValues: { ':next': { S: 'COMMITTING' }, ':expected': { S: 'ABORTING' } },
          },
          Catch: [{ ErrorEquals: ['DynamoDB.ConditionalCheckFailedException'], ResultPath: '$.lost', Next: 'ReadDecision' }],
          Next: 'ReadDecision',
        },
        ReadDecision: {
          Type: 'Task',
          Resource: 'arn:aws:states:::dynamodb:getItem',
          Parameters: { TableName: txTable, Key: key, ConsistentRead: true },
          ResultPath: '$.read',
          Next: 'Stamp',
        },
        Stamp: { Type: 'Pass', Parameters: { 'name.$': '$$.State.Name', 'at.$': '$$.State.EnteredTime' }, ResultPath: '$.stamp', End: true },
      },
    });
    const before = local.stats();
    const executionArn = await start(arn, { id: 'tx-dynamo' });
    const ended = await local.waitForExecution(executionArn, 5000);
    expect(ended.status).toBe('SUCCEEDED');
    const output = JSON.parse(ended.output!) as {
      lost: { Error: string; Cause: string };
      read: { Item: Record<string, { S: string }> };
      stamp: { name: string; at: string };
    };
    expect(output.lost.Error).toBe('DynamoDB.ConditionalCheckFailedException');
    expect(output.lost.Cause).toMatch(/conditional request failed/i);
    expect(output.read.Item.status).toEqual({ S: 'PREPARING' });
    expect(output.read.Item.by).toEqual({ S: 'Log' });
    const since = Date.parse(output.read.Item.since!.S);
    expect(since).toBeGreaterThanOrEqual(ended.startDate.getTime());
    expect(since).toBeLessThanOrEqual(Date.parse(output.stamp.at));
    expect(output.stamp.name).toBe('Stamp');
    expect(local.stats().dynamodbCalls - before.dynamodbCalls).toBe(3);
  });

  it('wraps lambda:invoke results as AWS does and names function errors by their errorType', async () => {
    const arn = local.createStateMachine('lambda', {
      StartAt: 'Call',
      States: {
        Call: { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', Parameters: { FunctionName: 'echo', 'Payload.$': '$' }, ResultPath: '$.call', Next: 'Charge' },
        Charge: {
          Type: 'Task',
          Resource: 'arn:aws:lambda:us-east-1:000000000000:function:charge',
          Catch: [{ ErrorEquals: ['States.TaskFailed'], ResultPath: '$.charge', Next: 'Declined' }],
          End: true,
        },
        Declined: { Type: 'Pass', Next: 'Dispatch' },
        // A callback task whose Lambda fails never waits for its token: it fails with the Lambda's error.
        Dispatch: {
          Type: 'Task',
          Resource: CALLBACK,
          Parameters: { FunctionName: 'broken', Payload: { 'token.$': '$$.Task.Token' } },
          Catch: [{ ErrorEquals: ['QueueUnreachable'], ResultPath: '$.dispatch', Next: 'Done' }],
          Next: 'Done',
        },
        Done: { Type: 'Pass', End: true },
      },
    });
    failures.set('arn:aws:lambda:us-east-1:000000000000:function:charge', Object.assign(new Error('card declined'), { name: 'PaymentDeclined' }));
    failures.set('broken', Object.assign(new Error('no route'), { name: 'QueueUnreachable' }));
    const ended = await local.waitForExecution(await start(arn, { amount: 5 }), 5000);
    expect(ended.status).toBe('SUCCEEDED');
    const output = JSON.parse(ended.output!) as { call: Record<string, unknown>; charge: { Error: string; Cause: string }; dispatch: { Error: string } };
    expect(output.dispatch.Error).toBe('QueueUnreachable');
    const brokenToken = invocations.find((i) => i.fn === 'broken')!.payload.token as string;
    expect(await sdkError(sfn.send(new SendTaskSuccessCommand({ taskToken: brokenToken, output: '{}' })))).toBe('TaskDoesNotExist');
    expect(output.call).toEqual({ ExecutedVersion: '$LATEST', Payload: { seen: { amount: 5 } }, StatusCode: 200 });
    expect(output.charge.Error).toBe('PaymentDeclined');
    expect(JSON.parse(output.charge.Cause)).toMatchObject({ errorType: 'PaymentDeclined', errorMessage: 'card declined' });
  });

  it('refuses a definition with an unsupported resource, naming the state', () => {
    expect(() =>
      local.createStateMachine('sns', {
        StartAt: 'Notify',
        States: {
          Notify: { Type: 'Task', Resource: 'arn:aws:states:::sns:publish', Parameters: { TopicArn: 'arn:aws:sns:us-east-1:000000000000:t', Message: 'hi' }, Next: 'Store' },
          Store: { Type: 'Task', Resource: 'arn:aws:states:::dynamodb:query', Parameters: { TableName: txTable }, End: true },
        },
      }),
    ).toThrow(/"Notify" \(arn:aws:states:::sns:publish\).*"Store"/);
  });
});

describe('executions', () => {
  it('starts idempotently by name and input, describes, lists and stops executions', async () => {
    const arn = local.createStateMachine('lifecycle', { StartAt: 'Wait', States: { Wait: { ...callbackTask({}, { 'tag.$': '$.tag' }), End: true } } });
    const input = { tag: 'idem' };
    const first = await sfn.send(new StartExecutionCommand({ stateMachineArn: arn, name: 'tx-1', input: JSON.stringify(input) }));
    const again = await sfn.send(new StartExecutionCommand({ stateMachineArn: arn, name: 'tx-1', input: JSON.stringify(input) }));
    expect(again.executionArn).toBe(first.executionArn);
    expect(again.startDate!.getTime()).toBe(first.startDate!.getTime());
    expect(await sdkError(sfn.send(new StartExecutionCommand({ stateMachineArn: arn, name: 'tx-1', input: '{"tag":"other"}' })))).toBe('ExecutionAlreadyExists');

    const [token] = await tokensFor('idem', 1);
    expect(invocationsOf('idem')).toHaveLength(1);
    await sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{"done":1}' }));
    await local.waitForExecution(first.executionArn!, 5000);
    const described = await sfn.send(new DescribeExecutionCommand({ executionArn: first.executionArn }));
    expect(described).toMatchObject({ status: 'SUCCEEDED', name: 'tx-1', stateMachineArn: arn, output: '{"done":1}' });
    // AWS: a closed execution's name cannot be reused, whatever the input.
    expect(await sdkError(sfn.send(new StartExecutionCommand({ stateMachineArn: arn, name: 'tx-1', input: JSON.stringify(input) })))).toBe('ExecutionAlreadyExists');

    const stopped = await start(arn, { tag: 'stop' }, 'tx-2');
    const [stopToken] = await tokensFor('stop', 1);
    await sfn.send(new StopExecutionCommand({ executionArn: stopped, error: 'Cancelled', cause: 'test' }));
    const stoppedDescription = await sfn.send(new DescribeExecutionCommand({ executionArn: stopped }));
    expect(stoppedDescription).toMatchObject({ status: 'ABORTED', error: 'Cancelled', cause: 'test' });
    expect(await sdkError(sfn.send(new SendTaskSuccessCommand({ taskToken: stopToken, output: '{}' })))).toBe('TaskDoesNotExist');

    const listed = await sfn.send(new ListExecutionsCommand({ stateMachineArn: arn }));
    expect(listed.executions!.map((e) => [e.name, e.status])).toEqual([
      ['tx-2', 'ABORTED'],
      ['tx-1', 'SUCCEEDED'],
    ]);
    const aborted = await sfn.send(new ListExecutionsCommand({ stateMachineArn: arn, statusFilter: 'ABORTED' }));
    expect(aborted.executions!.map((e) => e.name)).toEqual(['tx-2']);
    expect(await sdkError(sfn.send(new DescribeExecutionCommand({ executionArn: `${arn.replace(':stateMachine:', ':execution:')}:nope` })))).toBe('ExecutionDoesNotExist');
  });

  it('times out an execution past the definition TimeoutSeconds; its tokens answer TaskTimedOut', async () => {
    const arn = local.createStateMachine('exec-timeout', { TimeoutSeconds: 1, StartAt: 'Wait', States: { Wait: { ...callbackTask({}, { tag: 'exec-timeout' }), End: true } } });
    const ends: string[] = [];
    const unsubscribe = local.onExecutionEnd((e) => ends.push(`${e.name}:${e.status}`));
    const executionArn = await start(arn, {}, 'slow');
    const [token] = await tokensFor('exec-timeout', 1);
    const ended = await local.waitForExecution(executionArn, 5000);
    unsubscribe();
    expect(ended.status).toBe('TIMED_OUT');
    expect(ends).toEqual(['slow:TIMED_OUT']);
    expect(await sdkError(sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{}' })))).toBe('TaskTimedOut');
  });

  it('counts state transitions and callbacks', async () => {
    const arn = local.createStateMachine('billing', {
      StartAt: 'A',
      States: {
        A: { Type: 'Pass', Next: 'B' },
        B: { Type: 'Choice', Choices: [{ Variable: '$.go', BooleanEquals: true, Next: 'C' }], Default: 'A' },
        C: { ...callbackTask({}, { tag: 'billing' }), Next: 'D' },
        D: { Type: 'Succeed' },
      },
    });
    const before = local.stats();
    const executionArn = await start(arn, { go: true });
    const [token] = await tokensFor('billing', 1);
    await sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{}' }));
    expect(await sdkError(sfn.send(new SendTaskSuccessCommand({ taskToken: token, output: '{}' })))).toBe('TaskDoesNotExist');
    expect((await local.waitForExecution(executionArn, 5000)).status).toBe('SUCCEEDED');
    const after = local.stats();
    expect(after.executionsStarted - before.executionsStarted).toBe(1);
    expect(after.stateTransitions - before.stateTransitions).toBe(4);
    expect(after.callbacks - before.callbacks).toBe(2);
    expect(after.lambdaInvocations - before.lambdaInvocations).toBe(1);
  });
});
