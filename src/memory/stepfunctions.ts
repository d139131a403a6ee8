// Step Functions (Standard) in memory, on virtual time: the state machine's ASL definition
// (JSONPath) run by a small interpreter whose waits, retry delays and task timeouts are Timers
// callbacks and whose jitter is an injected RandomSource, so a seeded simulation replays exactly.
// Task resources run through handlers the caller registers (a Lambda, DynamoDB).
//
//   const sfn = new MemoryStepFunctions({ timers, random, handlers: { lambda } });
//   const arn = sfn.createStateMachine('workflow', workflowDefinition());
//   await sfn.start(arn, name, input); await sfn.signal(token, output); await sfn.describe(executionArn(arn, name));
//   sfn.crash()   // the whole service lost: running executions and tokens vanish (describe: MISSING)
//
// Modelled as AWS does it: a same-name start is the same execution; each task attempt gets a fresh
// token that works once; a timed-out, completed or retried task's token is gone (signal: false);
// Task TimeoutSeconds(Path) -> States.Timeout; Retry with backoff, MaxDelaySeconds and FULL jitter;
// Catch; Lambda errors named by the function's error type; DynamoDB errors as DynamoDB.<name>.
// Not modelled: heartbeats, Map/Parallel, JSONata, execution history limits, execution timeouts.
import type { RandomSource, Timer, Timers, WorkflowPort } from '../core/ports';
import type { ExecutionState } from '../core/recovery';
import { executionArn } from '../aws/workflow';
import {
  applyResultPath,
  choiceMatches,
  errorMatches,
  evaluateTemplate,
  isObject,
  readPath,
  selectPath,
  StatesError,
  toJson,
  type Json,
  type JsonObject,
} from './asl';

export { StatesError } from './asl';
export type { Json } from './asl';

export interface TaskHandlers {
  /**
   * lambda:invoke (and .waitForTaskToken, whose result is ignored): the function's answer. A thrown
   * error fails the task with the error's name as the ASL error (`LockWaitTimeoutError`, `Error`);
   * an error with `$fault` (the Lambda service failed, not the function) as `Lambda.<name>`.
   */
  lambda(functionName: string, payload: Json): Promise<unknown>;
  /**
   * dynamodb:<operation> with the state's Parameters (attribute values in DynamoDB JSON); the
   * service's response. A thrown error named `ConditionalCheckFailedException` (or already
   * `DynamoDB.ConditionalCheckFailedException`) fails the task as `DynamoDB.ConditionalCheckFailedException`.
   * Optional: a definition without DynamoDB tasks (the supervisors') needs none; without it such a
   * task fails with States.Runtime.
   */
  dynamodb?(operation: string, parameters: JsonObject): Promise<unknown>;
}

export interface MemoryStepFunctionsOptions {
  timers: Timers;
  /** For JitterStrategy FULL. */
  random: RandomSource;
  handlers: TaskHandlers;
  region?: string;
  accountId?: string;
  /** States one execution may enter before it fails (a bound on a loop; AWS bounds history at 25,000 events). */
  maxTransitionsPerExecution?: number;
}

export interface MemoryStepFunctionsStats {
  executionsStarted: number;
  /** States entered plus Task retry attempts: what AWS bills a Standard workflow by. */
  stateTransitions: number;
  lambdaInvocations: number;
  dynamodbCalls: number;
  /** signal() calls, answered false ones included. */
  callbacks: number;
}

export type ExecutionStatus = Exclude<ExecutionState, 'MISSING'>;

export interface ExecutionDescription {
  executionArn: string;
  name: string;
  status: ExecutionStatus;
  input: Json;
  output?: Json;
  error?: string;
  cause?: string;
  startMs: number;
  stopMs?: number;
  /** States entered plus retry attempts by this execution. */
  stateTransitions: number;
  /** The states entered, in order (retries not repeated). */
  path: string[];
}

interface Machine {
  arn: string;
  name: string;
  definition: JsonObject;
}

interface Execution extends ExecutionDescription {
  machine: Machine;
  /** What crash() or stop() calls to end every pending wait of this execution. */
  teardown: Set<() => void>;
}

/** Ends an execution's run loop without touching its record: it was stopped or lost. */
class Gone extends Error {}

const DEFAULT_MAX_TRANSITIONS = 25_000;
/** A retry delay or Wait longer than a year is a definition bug, not a wait. */
const MAX_WAIT_MS = 365 * 24 * 3_600_000;
const NAME_PATTERN = /^[A-Za-z0-9_-]{1,80}$/;

export class MemoryStepFunctions implements WorkflowPort {
  private readonly machines = new Map<string, Machine>();
  private readonly executions = new Map<string, Execution>();
  /** Live task tokens -> how to complete their task. */
  private readonly tokens = new Map<string, (outcome: { output: Json } | { error: StatesError }) => void>();
  private tokenCount = 0;
  private readonly counters: MemoryStepFunctionsStats = { executionsStarted: 0, stateTransitions: 0, lambdaInvocations: 0, dynamodbCalls: 0, callbacks: 0 };
  private readonly region: string;
  private readonly accountId: string;
  private readonly maxTransitions: number;

  constructor(private readonly options: MemoryStepFunctionsOptions) {
    this.region = options.region ?? 'us-east-1';
    this.accountId = options.accountId ?? '000000000000';
    this.maxTransitions = options.maxTransitionsPerExecution ?? DEFAULT_MAX_TRANSITIONS;
  }

  /** Register a definition (object or JSON text); answers its ARN. Same name again: replaced. */
  createStateMachine(name: string, definition: string | object): string {
    if (!NAME_PATTERN.test(name)) throw new Error(`state machine name must match ${NAME_PATTERN}, got '${name}'`);
    const parsed = toJson(typeof definition === 'string' ? JSON.parse(definition) : definition);
    if (!isObject(parsed) || typeof parsed.StartAt !== 'string' || !isObject(parsed.States) || !isObject(parsed.States[parsed.StartAt])) {
      throw new Error(`state machine ${name}: a definition needs StartAt naming one of its States`);
    }
    if (parsed.QueryLanguage === 'JSONata') throw new Error(`state machine ${name}: JSONata is not modelled; use JSONPath`);
    const arn = `arn:aws:states:${this.region}:${this.accountId}:stateMachine:${name}`;
    this.machines.set(arn, { arn, name, definition: parsed });
    return arn;
  }

  // ---- WorkflowPort ------------------------------------------------------------------------------

  start(stateMachineArn: string, name: string, input: unknown): Promise<'started' | 'exists'> {
    const machine = this.machines.get(stateMachineArn);
    if (!machine) return Promise.reject(new StatesError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${stateMachineArn}'`));
    if (!NAME_PATTERN.test(name)) return Promise.reject(new StatesError('InvalidName', `Invalid Name: '${name}'`));
    const arn = executionArn(stateMachineArn, name);
    const existing = this.executions.get(arn);
    if (existing) {
      // Same name and input while it runs: that execution (AWS's idempotent start); else ExecutionAlreadyExists.
      const same = existing.status === 'RUNNING' && JSON.stringify(existing.input) === JSON.stringify(toJson(input));
      return Promise.resolve(same ? 'started' : 'exists');
    }
    const execution: Execution = {
      executionArn: arn,
      name,
      status: 'RUNNING',
      input: toJson(input),
      startMs: this.options.timers.now(),
      stateTransitions: 0,
      path: [],
      machine,
      teardown: new Set(),
    };
    this.executions.set(arn, execution);
    this.counters.executionsStarted++;
    // The first state runs on a timer of its own, after StartExecution answered, as in AWS.
    this.wait(execution, 0).then(
      () => this.run(execution),
      () => undefined,
    );
    return Promise.resolve('started');
  }

  signal(taskToken: string, output: unknown): Promise<boolean> {
    this.counters.callbacks++;
    const complete = this.tokens.get(taskToken);
    if (!complete) return Promise.resolve(false);
    complete({ output: toJson(output) });
    return Promise.resolve(true);
  }

  describe(executionArnValue: string): Promise<ExecutionState> {
    return Promise.resolve(this.executions.get(executionArnValue)?.status ?? 'MISSING');
  }

  // ---- beyond the port -------------------------------------------------------------------------

  /** SendTaskFailure: the task fails with `error`; false when its token is gone. */
  fail(taskToken: string, error: string, cause = ''): boolean {
    this.counters.callbacks++;
    const complete = this.tokens.get(taskToken);
    if (!complete) return false;
    complete({ error: new StatesError(error, cause) });
    return true;
  }

  /** StopExecution: ABORTED, its tokens gone. */
  stop(executionArnValue: string): void {
    const execution = this.executions.get(executionArnValue);
    if (execution?.status !== 'RUNNING') return;
    this.end(execution, { status: 'ABORTED', error: 'States.Aborted', cause: 'stopped' });
  }

  /** The whole service lost (the embedded stack killed): every execution and token vanishes. */
  crash(): void {
    const running = [...this.executions.values()].filter((e) => e.status === 'RUNNING');
    this.executions.clear();
    for (const execution of running) this.teardown(execution);
    this.tokens.clear();
  }

  execution(executionArnValue: string): ExecutionDescription | undefined {
    const e = this.executions.get(executionArnValue);
    if (!e) return undefined;
    const { machine: _machine, teardown: _teardown, ...description } = e;
    return structuredClone(description);
  }

  running(): string[] {
    return [...this.executions.values()].filter((e) => e.status === 'RUNNING').map((e) => e.executionArn);
  }

  stats(): MemoryStepFunctionsStats {
    return { ...this.counters };
  }

  // ---- the interpreter -------------------------------------------------------------------------

  private async run(execution: Execution): Promise<void> {
    const states = execution.machine.definition.States as JsonObject;
    let name = execution.machine.definition.StartAt as string;
    let input = execution.input;
    try {
      for (;;) {
        const state = states[name];
        if (!isObject(state)) throw new StatesError('States.Runtime', `no state named ${name}`);
        this.transition(execution);
        execution.path.push(name);
        const result = await this.runState(execution, name, state, input);
        if (result.next === undefined) {
          this.end(execution, { status: 'SUCCEEDED', output: result.output });
          return;
        }
        name = result.next;
        input = result.output;
      }
    } catch (err) {
      if (err instanceof Gone || !this.alive(execution)) return;
      const error = err instanceof StatesError ? err : new StatesError('States.Runtime', String(err));
      this.end(execution, { status: 'FAILED', error: error.name, cause: error.cause });
    }
  }

  private async runState(execution: Execution, name: string, state: JsonObject, rawInput: Json): Promise<{ output: Json; next?: string }> {
    const enteredTime = new Date(this.options.timers.now()).toISOString();
    const context = (retryCount = 0, token?: string): Json => this.context(execution, name, enteredTime, retryCount, token);
    const next = (): string | undefined => (state.End === true ? undefined : (state.Next as string));
    const finish = (result: Json): Json =>
      selectPath(applyResultPath(rawInput, result, state.ResultPath as string | null | undefined), context(), state.OutputPath as string | null | undefined);
    switch (state.Type) {
      case 'Pass': {
        const effective = selectPath(rawInput, context(), state.InputPath as string | null | undefined);
        const result = 'Result' in state ? state.Result! : state.Parameters !== undefined ? evaluateTemplate(state.Parameters, effective, context()) : effective;
        return { output: finish(result), next: next() };
      }
      case 'Task':
        return this.runTask(execution, state, rawInput, context, next);
      case 'Choice': {
        const effective = selectPath(rawInput, context(), state.InputPath as string | null | undefined);
        const output = selectPath(effective, context(), state.OutputPath as string | null | undefined);
        const choice = (state.Choices as JsonObject[]).find((rule) => choiceMatches(rule, effective, context()));
        const target = (choice?.Next ?? state.Default) as string | undefined;
        if (target === undefined) throw new StatesError('States.NoChoiceMatched', `no Choice rule of ${name} matched and it has no Default`);
        return { output, next: target };
      }
      case 'Wait': {
        const effective = selectPath(rawInput, context(), state.InputPath as string | null | undefined);
        await this.wait(execution, this.waitMs(state, effective, context()));
        return { output: selectPath(effective, context(), state.OutputPath as string | null | undefined), next: next() };
      }
      case 'Succeed': {
        const effective = selectPath(rawInput, context(), state.InputPath as string | null | undefined);
        return { output: selectPath(effective, context(), state.OutputPath as string | null | undefined) };
      }
      case 'Fail':
        throw new Failed(String(state.Error ?? 'States.Fail'), String(state.Cause ?? ''));
      default:
        throw new StatesError('States.Runtime', `state type ${String(state.Type)} (${name}) is not modelled in memory`);
    }
  }

  private waitMs(state: JsonObject, input: Json, context: Json): number {
    let ms: number;
    if (typeof state.Seconds === 'number') ms = state.Seconds * 1000;
    else if (typeof state.SecondsPath === 'string') ms = Number(readPath(input, context, state.SecondsPath)) * 1000;
    else if (typeof state.Timestamp === 'string') ms = Date.parse(state.Timestamp) - this.options.timers.now();
    else if (typeof state.TimestampPath === 'string') ms = Date.parse(String(readPath(input, context, state.TimestampPath))) - this.options.timers.now();
    else throw new StatesError('States.Runtime', 'a Wait state needs Seconds, SecondsPath, Timestamp or TimestampPath');
    if (!Number.isFinite(ms) || ms < 0 && !('Timestamp' in state || 'TimestampPath' in state)) throw new StatesError('States.Runtime', `bad wait: ${ms} ms`);
    return Math.max(0, ms);
  }

  private async runTask(
    execution: Execution,
    state: JsonObject,
    rawInput: Json,
    context: (retryCount?: number, token?: string) => Json,
    next: () => string | undefined,
  ): Promise<{ output: Json; next?: string }> {
    const retriers = (state.Retry ?? []) as JsonObject[];
    const catchers = (state.Catch ?? []) as JsonObject[];
    const used = retriers.map(() => 0);
    for (let retryCount = 0; ; retryCount++) {
      try {
        const result = await this.attempt(execution, state, rawInput, context, retryCount);
        const selected = state.ResultSelector !== undefined ? evaluateTemplate(state.ResultSelector, result, context(retryCount)) : result;
        const output = applyResultPath(rawInput, selected, state.ResultPath as string | null | undefined);
        return { output: selectPath(output, context(retryCount), state.OutputPath as string | null | undefined), next: next() };
      } catch (err) {
        if (err instanceof Gone || !this.alive(execution)) throw new Gone();
        if (!(err instanceof StatesError) || err.name === 'States.Runtime') throw err;
        const i = retriers.findIndex((r) => errorMatches(r.ErrorEquals as string[], err.name));
        const retrier = retriers[i];
        if (retrier && used[i]! < ((retrier.MaxAttempts as number | undefined) ?? 3)) {
          const delayMs = this.retryDelayMs(retrier, used[i]!);
          used[i]!++;
          await this.wait(execution, delayMs);
          this.transition(execution);
          continue;
        }
        const catcher = catchers.find((c) => errorMatches(c.ErrorEquals as string[], err.name));
        if (!catcher) throw err;
        const errorOutput = { Error: err.name, Cause: err.cause };
        return { output: applyResultPath(rawInput, errorOutput, (catcher.ResultPath as string | null | undefined) ?? '$'), next: catcher.Next as string };
      }
    }
  }

  /** IntervalSeconds x BackoffRate^n, capped at MaxDelaySeconds, times a uniform draw under FULL jitter. */
  private retryDelayMs(retrier: JsonObject, n: number): number {
    const intervalSeconds = (retrier.IntervalSeconds as number | undefined) ?? 1;
    const backoffRate = (retrier.BackoffRate as number | undefined) ?? 2;
    const maxDelaySeconds = retrier.MaxDelaySeconds as number | undefined;
    let seconds = intervalSeconds * backoffRate ** n;
    if (maxDelaySeconds !== undefined) seconds = Math.min(seconds, maxDelaySeconds);
    if (retrier.JitterStrategy === 'FULL') seconds *= this.options.random();
    return Math.round(seconds * 1000);
  }

  /** One task attempt: its own token, its own timeout; settles once, whoever gets there first. */
  private attempt(execution: Execution, state: JsonObject, rawInput: Json, context: (retryCount?: number, token?: string) => Json, retryCount: number): Promise<Json> {
    const resource = parseResource(String(state.Resource));
    const timeoutSeconds =
      typeof state.TimeoutSecondsPath === 'string' ? readPath(rawInput, context(retryCount), state.TimeoutSecondsPath) : (state.TimeoutSeconds as number | undefined);
    if (timeoutSeconds !== undefined && (typeof timeoutSeconds !== 'number' || !Number.isInteger(timeoutSeconds) || timeoutSeconds < 1)) {
      throw new StatesError('States.Runtime', `TimeoutSeconds must be a positive integer, got ${JSON.stringify(timeoutSeconds)}`);
    }
    const token = resource.kind === 'callback' ? this.issueToken(execution) : undefined;
    const effective = selectPath(rawInput, context(retryCount, token), state.InputPath as string | null | undefined);
    const parameters = state.Parameters !== undefined ? evaluateTemplate(state.Parameters, effective, context(retryCount, token)) : effective;

    return new Promise<Json>((resolve, reject) => {
      let timer: Timer | undefined;
      let settled = false;
      const complete = (outcome: { output: Json } | { error: Error }): void => {
        if (settled) return;
        settled = true;
        timer?.cancel();
        execution.teardown.delete(teardown);
        if (token !== undefined) this.tokens.delete(token);
        if ('error' in outcome) reject(outcome.error);
        else resolve(outcome.output);
      };
      const teardown = (): void => complete({ error: new Gone() });
      execution.teardown.add(teardown);
      if (timeoutSeconds !== undefined) {
        timer = this.options.timers.at(this.options.timers.now() + timeoutSeconds * 1000, () =>
          complete({ error: new StatesError('States.Timeout', `Task timed out after ${timeoutSeconds} s`) }),
        );
      }
      if (token !== undefined) this.tokens.set(token, complete);
      this.call(resource, parameters).then(
        // A callback task's own result is ignored: only its token completes it.
        (output) => token === undefined && complete({ output }),
        (err: unknown) => complete({ error: err instanceof StatesError ? err : new StatesError('States.TaskFailed', String(err)) }),
      );
    });
  }

  private async call(resource: Resource, parameters: Json): Promise<Json> {
    switch (resource.kind) {
      case 'function':
        return this.invoke(resource.arn, parameters);
      case 'invoke':
      case 'callback': {
        if (!isObject(parameters) || typeof parameters.FunctionName !== 'string') {
          throw new StatesError('States.Runtime', 'lambda:invoke needs Parameters.FunctionName');
        }
        const payload = await this.invoke(parameters.FunctionName, parameters.Payload ?? {});
        return { ExecutedVersion: '$LATEST', Payload: payload, StatusCode: 200 };
      }
      case 'dynamodb': {
        if (!isObject(parameters)) throw new StatesError('States.Runtime', 'dynamodb tasks need Parameters');
        const dynamodb = this.options.handlers.dynamodb;
        if (!dynamodb) throw new StatesError('States.Runtime', `no DynamoDB handler for the ${resource.operation} task`);
        this.counters.dynamodbCalls++;
        try {
          return toJson(await dynamodb.call(this.options.handlers, resource.operation, structuredClone(parameters)));
        } catch (err) {
          const e = err instanceof Error ? err : new Error(String(err));
          const name = e.name.startsWith('DynamoDB.') || e.name.startsWith('States.') ? e.name : `DynamoDB.${e.name === 'Error' ? 'AmazonDynamoDBException' : e.name}`;
          throw new StatesError(name, e.message);
        }
      }
    }
  }

  private async invoke(functionName: string, payload: Json): Promise<Json> {
    this.counters.lambdaInvocations++;
    try {
      return toJson(await this.options.handlers.lambda(functionName, structuredClone(payload)));
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      if ('$fault' in e) throw new StatesError(`Lambda.${e.name}`, e.message);
      const errorType = e.name || 'Error';
      throw new StatesError(errorType, JSON.stringify({ errorType, errorMessage: e.message }));
    }
  }

  // ---- bookkeeping ---------------------------------------------------------------------------------

  private context(execution: Execution, stateName: string, enteredTime: string, retryCount: number, token?: string): Json {
    return {
      Execution: { Id: execution.executionArn, Name: execution.name, Input: execution.input, StartTime: new Date(execution.startMs).toISOString() },
      StateMachine: { Id: execution.machine.arn, Name: execution.machine.name },
      State: { Name: stateName, EnteredTime: enteredTime, RetryCount: retryCount },
      ...(token !== undefined ? { Task: { Token: token } } : {}),
    };
  }

  private transition(execution: Execution): void {
    if (!this.alive(execution)) throw new Gone();
    if (execution.stateTransitions >= this.maxTransitions) {
      throw new StatesError('States.Runtime', `more than ${this.maxTransitions} state transitions`);
    }
    execution.stateTransitions++;
    this.counters.stateTransitions++;
  }

  /** A pause on the Timers; crash() or stop() ends it with Gone. */
  private wait(execution: Execution, ms: number): Promise<void> {
    if (ms > MAX_WAIT_MS) return Promise.reject(new StatesError('States.Runtime', `a wait of ${ms} ms`));
    return new Promise<void>((resolve, reject) => {
      const teardown = (): void => {
        timer.cancel();
        reject(new Gone());
      };
      const timer = this.options.timers.at(this.options.timers.now() + ms, () => {
        execution.teardown.delete(teardown);
        resolve();
      });
      execution.teardown.add(teardown);
    });
  }

  private issueToken(execution: Execution): string {
    return `${execution.name}.${++this.tokenCount}`;
  }

  private alive(execution: Execution): boolean {
    return execution.status === 'RUNNING' && this.executions.get(execution.executionArn) === execution;
  }

  private end(execution: Execution, outcome: { status: ExecutionStatus; output?: Json; error?: string; cause?: string }): void {
    Object.assign(execution, outcome, { stopMs: this.options.timers.now() });
    this.teardown(execution);
  }

  private teardown(execution: Execution): void {
    for (const teardown of [...execution.teardown]) teardown();
    execution.teardown.clear();
  }
}

/** A Fail state: ends the execution, never caught. */
class Failed extends StatesError {}

type Resource = { kind: 'function'; arn: string } | { kind: 'invoke' } | { kind: 'callback' } | { kind: 'dynamodb'; operation: string };

function parseResource(resource: string): Resource {
  if (/^arn:[\w-]+:lambda:[\w-]+:\d+:function:[\w-]+(:[\w$-]+)?$/.test(resource)) return { kind: 'function', arn: resource };
  const m = /^arn:[\w-]+:states:::(lambda:invoke(\.waitForTaskToken)?|dynamodb:(getItem|putItem|updateItem|deleteItem))$/.exec(resource);
  if (!m) throw new StatesError('States.Runtime', `task resource ${resource} is not modelled in memory`);
  if (m[3]) return { kind: 'dynamodb', operation: m[3] };
  return m[2] ? { kind: 'callback' } : { kind: 'invoke' };
}
