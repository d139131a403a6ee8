// The embedded AWS Step Functions: ASL (JSONPath) run by aws-local-stepfunctions, plus what that
// library lacks and the coordinator relies on: service integrations keyed by resource ARN, unique
// task tokens with timeouts and heartbeats, $$.State per state entered, and the service API.
//
// API (in process; the same operations are served over HTTP by listen()):
//   new LocalStepFunctions({ invokeLambda, dynamodb, region?, accountId?, roleArn? })
//   createStateMachine(name, definition: string | object): string        -> state machine ARN
//   startExecution({ stateMachineArn, name?, input? }): { executionArn, startDate }
//   describeExecution(executionArn): ExecutionDescription
//   stopExecution(executionArn, error?, cause?): { stopDate }
//   listExecutions({ stateMachineArn, statusFilter? }): ExecutionDescription[] (newest first)
//   sendTaskSuccess(token, outputJson) / sendTaskFailure(token, error?, cause?) / sendTaskHeartbeat(token)
//   onExecutionEnd(listener): () => void (unsubscribe)    waitForExecution(executionArn, timeoutMs?)
//   forgetExecutions(): number    (what a restart of the embedded stack does: every execution gone)
//   stats(): { executionsStarted, stateTransitions, callbacks, heartbeats, lambdaInvocations, dynamodbCalls }
//   listen({ port? }): Promise<{ endpoint }>             close(): Promise<void>
// Service errors are SfnError with .name as AWS names it (InvalidToken, TaskDoesNotExist,
// TaskTimedOut, ExecutionAlreadyExists, ExecutionDoesNotExist, StateMachineDoesNotExist ...).
//
// Semantics follow AWS Standard workflows where they matter to the coordinator:
// - StartExecution with the name of an open execution and the same input returns that execution;
//   another input, or a closed execution of that name (whatever the input), is ExecutionAlreadyExists.
// - Each task attempt (a Retry included) gets a fresh token; a token answers InvalidToken if this
//   instance never issued it, TaskTimedOut once its task timed out (task, heartbeat or execution
//   timeout), TaskDoesNotExist once its task completed, failed or its execution stopped.
// - A Task has no timeout unless TimeoutSeconds(Path) says so; HeartbeatSeconds(Path) applies to
//   waitForTaskToken tasks. Timeouts fail with States.Timeout / States.HeartbeatTimeout, which
//   States.TaskFailed does not match and States.Timeout matches both of.
// - stateTransitions counts every state entered plus every retry attempt (what AWS bills).
// - $$.State.Name/EnteredTime/RetryCount are per state; a Map running iterations of the same state
//   concurrently shares them (EnteredTime of the latest entry, RetryCount summed over iterations).
// Nothing persists: executions and tokens live as long as this object.
import './polyfills';
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { ExecutionError, StateMachine, type StateMachineDefinition } from 'aws-local-stepfunctions';
import {
  DeleteItemCommand,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
  type DeleteItemCommandInput,
  type DynamoDBClient,
  type GetItemCommandInput,
  type PutItemCommandInput,
  type UpdateItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import { LOCAL_ACCOUNT, LOCAL_REGION } from './aws-env';
import {
  compileDefinition,
  DefinitionError,
  EXECUTION_CONTEXT_KEY,
  HIDDEN_HEARTBEAT,
  HIDDEN_INPUT,
  HIDDEN_TIMEOUT,
  installEntryHooks,
  STATE_CONTEXT_PREFIX,
  type CompiledDefinition,
  type Json,
  type TaskSpec,
} from './stepfunctions-asl';
import { serveJsonProtocol, SfnError, type JsonProtocolServer } from './stepfunctions-http';

export { SfnError } from './stepfunctions-http';
export { DefinitionError } from './stepfunctions-asl';

export type ExecutionStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';

export interface LocalStepFunctionsOptions {
  /** Run a Lambda function in process; a function error throws an Error whose name is its errorType. */
  invokeLambda: (functionArnOrName: string, payload: unknown) => Promise<unknown>;
  /** Low-level client pointed at the local DynamoDB, used by the dynamodb:* integrations. */
  dynamodb: DynamoDBClient;
  region?: string;
  accountId?: string;
  /** Reported by DescribeStateMachine; nothing checks it locally. */
  roleArn?: string;
}

export interface ExecutionDescription {
  executionArn: string;
  stateMachineArn: string;
  name: string;
  status: ExecutionStatus;
  startDate: Date;
  stopDate?: Date;
  input: string;
  output?: string;
  error?: string;
  cause?: string;
}

export interface ExecutionEndEvent {
  executionArn: string;
  stateMachineArn: string;
  name: string;
  status: Exclude<ExecutionStatus, 'RUNNING'>;
  error?: string;
  cause?: string;
}

export interface LocalStepFunctionsStats {
  executionsStarted: number;
  /** States entered plus Task retry attempts: the unit AWS bills Standard workflows by. */
  stateTransitions: number;
  /** SendTaskSuccess + SendTaskFailure requests received, rejected ones included (they use quota). */
  callbacks: number;
  heartbeats: number;
  lambdaInvocations: number;
  dynamodbCalls: number;
}

export interface StateMachineDescription {
  stateMachineArn: string;
  name: string;
  definition: string;
  roleArn: string;
  type: 'STANDARD';
  status: 'ACTIVE';
  creationDate: Date;
}

interface StateMachineRecord extends StateMachineDescription {
  compiled: CompiledDefinition;
}

type Outcome = { output: Json } | { error: Error };
/** What a token answers after its task ends: TaskDoesNotExist or TaskTimedOut. */
type TokenFate = 'GONE' | 'TIMED_OUT';

interface TaskAttempt {
  finish(outcome: Outcome, fate: TokenFate): void;
}

interface LiveToken {
  attempt: TaskAttempt;
  heartbeat(): void;
}

interface ExecutionRecord extends ExecutionDescription {
  machine: StateMachineRecord;
  attempts: Set<TaskAttempt>;
  /** Stands for $$.Task.Token in evaluated Parameters until a task attempt swaps in its own token. */
  tokenPlaceholder: string;
  abort?: () => void;
  cancelTimeout?: () => void;
  /** This execution's share of `stats().stateTransitions`. */
  stateTransitions: number;
}

interface StateContext {
  view: Record<string, unknown>;
  enter(): void;
  /** Called when a Task attempt starts, after its Parameters (and $$.State.RetryCount) were evaluated. */
  attempt(): void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** Finished tokens remembered to answer TaskTimedOut precisely; older ones answer TaskDoesNotExist. */
const FINISHED_TOKENS_KEPT = 100_000;
const NAME_PATTERN = /^[^\s<>{}[\]?*"#%\\^|~`$&,;:/\u0000-\u001f\u007f-\u009f]{1,80}$/;
const FAIL_STATE_DEFAULT_CAUSE = 'Execution failed because of a Fail state';

/** setTimeout that survives delays past 2^31-1 ms instead of firing at once. Returns a cancel. */
function safeTimeout(fn: () => void, ms: number): () => void {
  const due = Date.now() + ms;
  let handle: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const left = due - Date.now();
    handle = setTimeout(() => (due - Date.now() > 0 && left > MAX_TIMER_MS ? arm() : fn()), Math.min(Math.max(left, 0), MAX_TIMER_MS));
  };
  arm();
  return () => clearTimeout(handle);
}

function namedError(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

/** States.Runtime and execution teardown: the library must neither Retry nor Catch these. */
function fatalError(name: string, message: string): Error {
  return Object.assign(namedError(name, message), { isRetryable: false, isCatchable: false });
}

// The library lets States.TaskFailed match any Task error except an instance of its internal
// StatesTimeoutError class, which it does not export. Our timeouts must be instances of it, so the
// class is taken from the one error the library throws with it: a Task timing out after 1 ms.
let timeoutErrorClass: Promise<new () => Error> | undefined;
function loadTimeoutErrorClass(): Promise<new () => Error> {
  timeoutErrorClass ??= (async () => {
    const probe = new StateMachine(
      {
        StartAt: 'Probe',
        States: { Probe: { Type: 'Task', Resource: 'arn:aws:lambda:us-east-1:000000000000:function:probe', TimeoutSeconds: 0.001, End: true } },
      },
      { validationOptions: { noValidate: true } },
    );
    const run = probe.run(null, { overrides: { taskResourceLocalHandlers: { Probe: () => new Promise((resolve) => setTimeout(() => resolve(null), 50)) } } });
    try {
      await run.result;
    } catch (err) {
      const cause = err instanceof ExecutionError ? err.cause : undefined;
      if (cause instanceof Error && cause.name === 'States.Timeout') return cause.constructor as new () => Error;
    }
    throw new Error('aws-local-stepfunctions no longer times out Tasks as expected; cannot build States.Timeout errors');
  })();
  return timeoutErrorClass;
}

function isJsonObject(value: unknown): value is Record<string, Json> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function positiveInteger(value: unknown, field: string, stateName: string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1) return value;
  throw fatalError('States.Runtime', `An error occurred while executing the state '${stateName}'. The ${field} resolved to ${JSON.stringify(value)}, expected a positive integer`);
}

function substitute(value: Json, placeholder: string, token: string): Json {
  if (typeof value === 'string') return value.includes(placeholder) ? value.replaceAll(placeholder, token) : value;
  if (Array.isArray(value)) return value.map((v) => substitute(v, placeholder, token));
  if (isJsonObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, placeholder, token)]));
  return value;
}

/** JSON as a service returns it: no undefined, binary as base64 (what Step Functions hands on). */
function toJson(value: unknown): Json {
  if (value === undefined || value === null) return null;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(toJson);
  if (typeof value === 'object') {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = toJson(v);
    return out;
  }
  if (typeof value === 'number' || typeof value === 'string' || typeof value === 'boolean') return value;
  return null;
}

/** ASL carries binary attribute values as base64 strings; the SDK wants bytes. */
function toSdkAttributeValues(value: Json): unknown {
  if (Array.isArray(value)) return value.map(toSdkAttributeValues);
  if (!isJsonObject(value)) return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === 'B' && typeof value.B === 'string') return { B: Buffer.from(value.B, 'base64') };
  if (keys.length === 1 && keys[0] === 'BS' && Array.isArray(value.BS) && value.BS.every((v) => typeof v === 'string')) {
    return { BS: value.BS.map((v) => Buffer.from(v as string, 'base64')) };
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toSdkAttributeValues(v)]));
}

function makeStateContext(name: string): StateContext {
  let enteredTime = '';
  let attempts = 0;
  return {
    // Getters: the library copies the context object once per run, but reads these on every path evaluation.
    view: {
      Name: name,
      get EnteredTime() {
        return enteredTime;
      },
      get RetryCount() {
        return attempts;
      },
    },
    enter() {
      enteredTime = new Date().toISOString();
      attempts = 0;
    },
    attempt() {
      attempts++;
    },
  };
}

function epochSeconds(date: Date | undefined): number | undefined {
  return date === undefined ? undefined : date.getTime() / 1000;
}

function stringArg(body: Record<string, unknown>, key: string, required: true): string;
function stringArg(body: Record<string, unknown>, key: string, required?: false): string | undefined;
function stringArg(body: Record<string, unknown>, key: string, required = false): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) {
    if (required) throw new SfnError('ValidationException', `1 validation error detected: Value null at '${key}' failed to satisfy constraint: Member must not be null`);
    return undefined;
  }
  if (typeof value !== 'string') throw new SfnError('ValidationException', `'${key}' must be a string`);
  return value;
}

export class LocalStepFunctions {
  private readonly region: string;
  private readonly accountId: string;
  private readonly roleArn: string;
  private readonly machines = new Map<string, StateMachineRecord>();
  private readonly executions = new Map<string, ExecutionRecord>();
  private readonly liveTokens = new Map<string, LiveToken>();
  private readonly finishedTokens = new Map<string, TokenFate>();
  private readonly endListeners = new Set<(event: ExecutionEndEvent) => void>();
  // Tokens are signed so a token this instance never issued (a typo, another run) is InvalidToken
  // while a forgotten finished one is still recognised as TaskDoesNotExist.
  private readonly tokenSecret = randomBytes(32);
  private readonly counters: LocalStepFunctionsStats = {
    executionsStarted: 0,
    stateTransitions: 0,
    callbacks: 0,
    heartbeats: 0,
    lambdaInvocations: 0,
    dynamodbCalls: 0,
  };
  private server: JsonProtocolServer | undefined;

  constructor(private readonly options: LocalStepFunctionsOptions) {
    this.region = options.region ?? LOCAL_REGION;
    this.accountId = options.accountId ?? LOCAL_ACCOUNT;
    this.roleArn = options.roleArn ?? `arn:aws:iam::${this.accountId}:role/local-stepfunctions`;
    void loadTimeoutErrorClass().catch(() => undefined);
  }

  // ---- state machines -------------------------------------------------------------------------

  /**
   * Register a state machine. Throws DefinitionError naming every Task state whose Resource is not
   * served locally (and anything else it cannot run faithfully, e.g. JSONata); an ASL validation
   * failure throws too. Same name and definition again is a no-op, as on AWS.
   */
  createStateMachine(name: string, definition: string | object): string {
    if (!NAME_PATTERN.test(name)) throw new SfnError('InvalidName', `Invalid State Machine Name: '${name}'`);
    const compiled = compileDefinition(definition);
    const original: unknown = typeof definition === 'string' ? JSON.parse(definition) : definition;
    try {
      new StateMachine(original as StateMachineDefinition, { validationOptions: { checkArn: true, checkPaths: true } });
    } catch (err) {
      throw new DefinitionError((err as Error).message);
    }
    const arn = `arn:aws:states:${this.region}:${this.accountId}:stateMachine:${name}`;
    const text = typeof definition === 'string' ? definition : JSON.stringify(definition);
    const existing = this.machines.get(arn);
    if (existing) {
      if (existing.definition === text) return arn;
      throw new SfnError('StateMachineAlreadyExists', `State Machine Already Exists: '${arn}'`);
    }
    this.machines.set(arn, {
      stateMachineArn: arn,
      name,
      definition: text,
      roleArn: this.roleArn,
      type: 'STANDARD',
      status: 'ACTIVE',
      creationDate: new Date(),
      compiled,
    });
    return arn;
  }

  describeStateMachine(stateMachineArn: string): StateMachineDescription {
    const { compiled: _compiled, ...description } = this.machine(stateMachineArn);
    return description;
  }

  listStateMachines(): StateMachineDescription[] {
    return [...this.machines.keys()].map((arn) => this.describeStateMachine(arn));
  }

  private machine(stateMachineArn: string): StateMachineRecord {
    if (!/^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[^:]+$/.test(stateMachineArn)) {
      throw new SfnError('InvalidArn', `Invalid Arn: '${stateMachineArn}'`);
    }
    const machine = this.machines.get(stateMachineArn);
    if (!machine) throw new SfnError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${stateMachineArn}'`);
    return machine;
  }

  // ---- executions -----------------------------------------------------------------------------

  startExecution(request: { stateMachineArn: string; name?: string; input?: string }): { executionArn: string; startDate: Date } {
    const machine = this.machine(request.stateMachineArn);
    const name = request.name ?? randomUUID();
    if (!NAME_PATTERN.test(name)) throw new SfnError('InvalidName', `Invalid Execution Name: '${name}'`);
    const input = request.input ?? '{}';
    let parsedInput: unknown;
    try {
      parsedInput = JSON.parse(input);
    } catch {
      throw new SfnError('InvalidExecutionInput', `Invalid State Machine Execution Input: '${input.slice(0, 100)}'`);
    }
    const executionArn = `arn:aws:states:${this.region}:${this.accountId}:execution:${machine.name}:${name}`;
    const existing = this.executions.get(executionArn);
    if (existing) {
      if (existing.status === 'RUNNING' && existing.input === input) return { executionArn, startDate: existing.startDate };
      throw new SfnError('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn}'`);
    }
    const execution: ExecutionRecord = {
      executionArn,
      stateMachineArn: machine.stateMachineArn,
      name,
      status: 'RUNNING',
      startDate: new Date(),
      input,
      machine,
      attempts: new Set(),
      tokenPlaceholder: `__sfn_local_task_token_${randomUUID()}__`,
      stateTransitions: 0,
    };
    this.executions.set(executionArn, execution);
    this.counters.executionsStarted++;
    const timeoutSeconds = machine.compiled.timeoutSeconds;
    if (timeoutSeconds !== undefined) {
      execution.cancelTimeout = safeTimeout(() => this.finish(execution, 'TIMED_OUT', {}), timeoutSeconds * 1000);
    }
    void this.run(execution, parsedInput as Json).catch((err: unknown) => {
      this.finish(execution, 'FAILED', { error: 'States.Runtime', cause: err instanceof Error ? err.message : String(err) });
    });
    return { executionArn, startDate: execution.startDate };
  }

  describeExecution(executionArn: string): ExecutionDescription {
    const { machine: _m, attempts: _a, tokenPlaceholder: _t, abort: _ab, cancelTimeout: _c, stateTransitions: _s, ...description } = this.execution(executionArn);
    return description;
  }

  stopExecution(executionArn: string, error?: string, cause?: string): { stopDate: Date } {
    const execution = this.execution(executionArn);
    this.finish(execution, 'ABORTED', { ...(error !== undefined ? { error } : {}), ...(cause !== undefined ? { cause } : {}) });
    return { stopDate: execution.stopDate ?? new Date() };
  }

  listExecutions(request: { stateMachineArn: string; statusFilter?: ExecutionStatus }): ExecutionDescription[] {
    this.machine(request.stateMachineArn);
    return [...this.executions.values()]
      .filter((e) => e.stateMachineArn === request.stateMachineArn && (!request.statusFilter || e.status === request.statusFilter))
      .sort((a, b) => b.startDate.getTime() - a.startDate.getTime())
      .map((e) => this.describeExecution(e.executionArn));
  }

  /** Called once per execution when it leaves RUNNING. Returns the unsubscribe function. */
  onExecutionEnd(listener: (event: ExecutionEndEvent) => void): () => void {
    this.endListeners.add(listener);
    return () => this.endListeners.delete(listener);
  }

  /** Resolves with the description once the execution has ended; rejects after `timeoutMs`. */
  waitForExecution(executionArn: string, timeoutMs = 30_000): Promise<ExecutionDescription> {
    const execution = this.execution(executionArn);
    if (execution.status !== 'RUNNING') return Promise.resolve(this.describeExecution(executionArn));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        unsubscribe();
        reject(new Error(`execution ${executionArn} still RUNNING after ${timeoutMs} ms`));
      }, timeoutMs);
      const unsubscribe = this.onExecutionEnd((event) => {
        if (event.executionArn !== executionArn) return;
        clearTimeout(timer);
        unsubscribe();
        resolve(this.describeExecution(executionArn));
      });
    });
  }

  private execution(executionArn: string): ExecutionRecord {
    if (!/^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:execution:[^:]+:[^:]+$/.test(executionArn)) {
      throw new SfnError('InvalidArn', `Invalid Arn: '${executionArn}'`);
    }
    const execution = this.executions.get(executionArn);
    if (!execution) throw new SfnError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
    return execution;
  }

  private async run(execution: ExecutionRecord, input: Json): Promise<void> {
    await loadTimeoutErrorClass();
    if (execution.status !== 'RUNNING') return;
    const { compiled } = execution.machine;
    const definition = structuredClone(compiled.definition);
    const states = new Map<string, StateContext>();
    const startTime = execution.startDate.toISOString();
    const executionContext = { Id: execution.executionArn, Name: execution.name, StartTime: startTime, Input: input, RoleArn: execution.machine.roleArn, RedriveCount: 0 };
    const context: Record<string, unknown> = {
      Execution: executionContext,
      [EXECUTION_CONTEXT_KEY]: executionContext,
      StateMachine: { Id: execution.machine.stateMachineArn, Name: execution.machine.name },
      Task: { Token: execution.tokenPlaceholder },
    };
    for (const [name, id] of compiled.stateIds) {
      const state = makeStateContext(name);
      states.set(name, state);
      context[`${STATE_CONTEXT_PREFIX}${id}`] = state.view;
    }
    installEntryHooks(definition, (name) => {
      if (execution.status !== 'RUNNING') return;
      this.counters.stateTransitions++;
      execution.stateTransitions++;
      states.get(name)?.enter();
    });
    const handlers: Record<string, (input: Json) => Promise<Json>> = {};
    for (const [name, spec] of compiled.tasks) {
      const state = states.get(name)!;
      handlers[name] = (taskInput) => this.runTask(execution, spec, taskInput, state);
    }
    const machine = new StateMachine(definition as unknown as StateMachineDefinition, { validationOptions: { noValidate: true } });
    const running = machine.run(input, { overrides: { taskResourceLocalHandlers: handlers }, context });
    execution.abort = running.abort;
    // Retries are billed as transitions. The library reports them only as events (Map iterations'
    // retries included), which arrive a few microtasks late: fine for counters.
    void (async () => {
      for await (const event of running.eventLogs) {
        if (event.type !== 'StateRetried') continue;
        this.counters.stateTransitions++;
        execution.stateTransitions++;
      }
    })().catch(() => undefined);
    try {
      const output = await running.result;
      this.finish(execution, 'SUCCEEDED', { output: JSON.stringify(output ?? null) });
    } catch (err) {
      // ExecutionAbortedError lands here after stop/timeout; finish() ignores ended executions.
      const cause = err instanceof ExecutionError ? err.cause : err;
      if (cause instanceof Error) {
        const failState = cause.name === 'FailStateError';
        this.finish(execution, 'FAILED', {
          ...(failState ? {} : { error: cause.name }),
          ...(cause.message === FAIL_STATE_DEFAULT_CAUSE ? {} : { cause: cause.message }),
        });
      } else {
        this.finish(execution, 'FAILED', { error: 'States.Runtime', cause: String(cause) });
      }
    }
  }

  private finish(execution: ExecutionRecord, status: Exclude<ExecutionStatus, 'RUNNING'>, fields: { output?: string; error?: string; cause?: string }): void {
    if (execution.status !== 'RUNNING') return;
    execution.status = status;
    execution.stopDate = new Date();
    Object.assign(execution, fields);
    execution.cancelTimeout?.();
    // Tokens of a timed-out execution answer TaskTimedOut; of a stopped one, TaskDoesNotExist.
    const fate: TokenFate = status === 'TIMED_OUT' ? 'TIMED_OUT' : 'GONE';
    for (const attempt of [...execution.attempts]) {
      attempt.finish({ error: fatalError('States.Runtime', `execution ${status}`) }, fate);
    }
    if (status === 'ABORTED' || status === 'TIMED_OUT') execution.abort?.();
    const event: ExecutionEndEvent = {
      executionArn: execution.executionArn,
      stateMachineArn: execution.stateMachineArn,
      name: execution.name,
      status,
      ...(execution.error !== undefined ? { error: execution.error } : {}),
      ...(execution.cause !== undefined ? { cause: execution.cause } : {}),
    };
    for (const listener of [...this.endListeners]) {
      try {
        listener(event);
      } catch (err) {
        console.error('onExecutionEnd listener threw', err);
      }
    }
  }

  // ---- tasks ----------------------------------------------------------------------------------

  private async runTask(execution: ExecutionRecord, spec: TaskSpec, rawInput: Json, state: StateContext): Promise<Json> {
    state.attempt();
    let input = rawInput;
    let timeoutSeconds = spec.timeoutSeconds;
    let heartbeatSeconds = spec.heartbeatSeconds;
    if (spec.hasHiddenFields && isJsonObject(input)) {
      const fields = input;
      if (HIDDEN_TIMEOUT in fields) timeoutSeconds = positiveInteger(fields[HIDDEN_TIMEOUT], 'TimeoutSecondsPath', spec.name);
      if (HIDDEN_HEARTBEAT in fields) heartbeatSeconds = positiveInteger(fields[HIDDEN_HEARTBEAT], 'HeartbeatSecondsPath', spec.name);
      if (spec.wrapsInput) {
        input = fields[HIDDEN_INPUT] ?? null;
      } else {
        const { [HIDDEN_TIMEOUT]: _t, [HIDDEN_HEARTBEAT]: _h, ...rest } = fields;
        input = rest;
      }
    }
    const Timeout = await loadTimeoutErrorClass();
    if (execution.status !== 'RUNNING') throw fatalError('States.Runtime', `execution ${execution.status}`);
    const timeoutError = (name: string, cause: string): Error => {
      const error = new Timeout();
      error.name = name;
      error.message = cause;
      return error;
    };

    return new Promise<Json>((resolve, reject) => {
      const cancels: Array<() => void> = [];
      let token: string | undefined;
      let settled = false;
      const attempt: TaskAttempt = {
        finish: (outcome, fate) => {
          if (settled) return;
          settled = true;
          for (const cancel of cancels) cancel();
          execution.attempts.delete(attempt);
          if (token !== undefined) {
            this.liveTokens.delete(token);
            this.rememberFinishedToken(token, fate);
          }
          if ('error' in outcome) reject(outcome.error);
          else resolve(outcome.output);
        },
      };
      execution.attempts.add(attempt);
      const fail = (error: unknown): void => attempt.finish({ error: error instanceof Error ? error : namedError('States.TaskFailed', String(error)) }, 'GONE');

      if (timeoutSeconds !== undefined) {
        const seconds = timeoutSeconds;
        cancels.push(safeTimeout(() => attempt.finish({ error: timeoutError('States.Timeout', `Task timed out after ${seconds} s`) }, 'TIMED_OUT'), seconds * 1000));
      }

      if (spec.kind !== 'lambda:invoke.waitForTaskToken') {
        this.callIntegration(spec, input).then((output) => attempt.finish({ output }, 'GONE'), fail);
        return;
      }

      const issued = this.issueToken();
      token = issued;
      let cancelHeartbeat: (() => void) | undefined;
      const armHeartbeat = (): void => {
        if (heartbeatSeconds === undefined) return;
        const seconds = heartbeatSeconds;
        cancelHeartbeat?.();
        cancelHeartbeat = safeTimeout(
          () => attempt.finish({ error: timeoutError('States.HeartbeatTimeout', `No heartbeat for ${seconds} s`) }, 'TIMED_OUT'),
          seconds * 1000,
        );
      };
      cancels.push(() => cancelHeartbeat?.());
      armHeartbeat();
      // Registered before the Lambda runs: an in-process handler may call back before it returns.
      this.liveTokens.set(issued, { attempt, heartbeat: armHeartbeat });
      const withToken = substitute(input, execution.tokenPlaceholder, issued);
      // The task now waits for the callback; only an invocation failure ends it from here.
      this.invokeIntegration(withToken).catch(fail);
    });
  }

  private async callIntegration(spec: TaskSpec, input: Json): Promise<Json> {
    switch (spec.kind) {
      case 'lambda:function':
        return this.invoke(spec.resource, input);
      case 'lambda:invoke':
        return this.invokeIntegration(input);
      case 'dynamodb':
        return this.callDynamo(spec, input);
      default:
        throw fatalError('States.Runtime', `no integration for ${spec.resource}`);
    }
  }

  /** lambda:invoke: Parameters are the Lambda Invoke API's; the result is wrapped as AWS does. */
  private async invokeIntegration(parameters: Json): Promise<Json> {
    if (!isJsonObject(parameters) || typeof parameters.FunctionName !== 'string') {
      throw fatalError('States.Runtime', 'lambda:invoke needs Parameters.FunctionName as a string');
    }
    const payload = parameters.Payload ?? {};
    if (parameters.InvocationType === 'Event') {
      // Asynchronous invocation: AWS accepts it and the function's outcome never reaches the task.
      this.invoke(parameters.FunctionName, payload).catch(() => undefined);
      return { Payload: '', StatusCode: 202 };
    }
    const result = await this.invoke(parameters.FunctionName, payload);
    return { ExecutedVersion: '$LATEST', Payload: result, StatusCode: 200 };
  }

  private async invoke(functionName: string, payload: Json): Promise<Json> {
    this.counters.lambdaInvocations++;
    let result: unknown;
    try {
      // Through JSON both ways, as over the wire: neither side can alias the other's objects.
      result = await this.options.invokeLambda(functionName, JSON.parse(JSON.stringify(payload)) as unknown);
    } catch (err) {
      const error = err instanceof Error ? err : namedError('Error', String(err));
      if ('$fault' in error) throw namedError(`Lambda.${error.name}`, error.message);
      const trace = error.stack ? error.stack.split('\n').slice(1).map((line) => line.trim()) : [];
      const errorType = error.name || 'Error';
      throw namedError(errorType, JSON.stringify({ errorType, errorMessage: error.message, trace }));
    }
    return result === undefined ? null : (JSON.parse(JSON.stringify(result)) as Json);
  }

  private async callDynamo(spec: TaskSpec, parameters: Json): Promise<Json> {
    this.counters.dynamodbCalls++;
    const input = toSdkAttributeValues(parameters);
    const client = this.options.dynamodb;
    try {
      let response: object;
      switch (spec.dynamoOperation) {
        case 'getItem':
          response = await client.send(new GetItemCommand(input as GetItemCommandInput));
          break;
        case 'putItem':
          response = await client.send(new PutItemCommand(input as PutItemCommandInput));
          break;
        case 'updateItem':
          response = await client.send(new UpdateItemCommand(input as UpdateItemCommandInput));
          break;
        case 'deleteItem':
          response = await client.send(new DeleteItemCommand(input as DeleteItemCommandInput));
          break;
        default:
          throw fatalError('States.Runtime', `no integration for ${spec.resource}`);
      }
      const { $metadata: _metadata, ...output } = response as Record<string, unknown>;
      return toJson(output);
    } catch (err) {
      if (err instanceof Error && ('$metadata' in err || '$fault' in err)) {
        const status = (err as { $metadata?: { httpStatusCode?: number; requestId?: string } }).$metadata;
        throw namedError(
          `DynamoDB.${err.name}`,
          `${err.message} (Service: DynamoDb, Status Code: ${status?.httpStatusCode ?? 400}, Request ID: ${status?.requestId ?? 'local'})`,
        );
      }
      if (err instanceof Error && (err as { isCatchable?: boolean }).isCatchable === false) throw err;
      throw namedError('DynamoDB.AmazonDynamoDBException', err instanceof Error ? err.message : String(err));
    }
  }

  // ---- callbacks ------------------------------------------------------------------------------

  sendTaskSuccess(taskToken: string, output: string): void {
    this.counters.callbacks++;
    const live = this.lookupToken(taskToken);
    let parsed: Json;
    try {
      parsed = JSON.parse(output) as Json;
    } catch {
      throw new SfnError('InvalidOutput', 'Invalid Output: output is not JSON');
    }
    live.attempt.finish({ output: parsed }, 'GONE');
  }

  sendTaskFailure(taskToken: string, error?: string, cause?: string): void {
    this.counters.callbacks++;
    const live = this.lookupToken(taskToken);
    live.attempt.finish({ error: namedError(error ?? 'States.TaskFailed', cause ?? '') }, 'GONE');
  }

  sendTaskHeartbeat(taskToken: string): void {
    this.counters.heartbeats++;
    this.lookupToken(taskToken).heartbeat();
  }

  private sign(nonce: string): string {
    return createHmac('sha256', this.tokenSecret).update(nonce).digest('base64url');
  }

  private issueToken(): string {
    const nonce = randomBytes(24).toString('base64url');
    return `${nonce}.${this.sign(nonce)}`;
  }

  private lookupToken(token: unknown): LiveToken {
    if (typeof token !== 'string' || token.length === 0 || token.length > 2048) throw new SfnError('InvalidToken', 'Invalid Token');
    const live = this.liveTokens.get(token);
    if (live) return live;
    const [nonce, signature, extra] = token.split('.');
    const expected = nonce ? Buffer.from(this.sign(nonce)) : undefined;
    const given = Buffer.from(signature ?? '');
    if (extra !== undefined || !expected || expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw new SfnError('InvalidToken', 'Invalid Token');
    }
    if (this.finishedTokens.get(token) === 'TIMED_OUT') throw new SfnError('TaskTimedOut', 'Task Timed Out');
    throw new SfnError('TaskDoesNotExist', 'Task does not exist anymore');
  }

  private rememberFinishedToken(token: string, fate: TokenFate): void {
    this.finishedTokens.set(token, fate);
    if (this.finishedTokens.size > FINISHED_TOKENS_KEPT) {
      const oldest = this.finishedTokens.keys().next();
      if (!oldest.done) this.finishedTokens.delete(oldest.value);
    }
  }

  // ---- service ----------------------------------------------------------------------------------

  stats(): LocalStepFunctionsStats {
    return { ...this.counters };
  }

  /** Each execution's name, status and state transitions so far (a benchmark attributes them to what they supervised). */
  executionStats(): { name: string; status: ExecutionStatus; stateTransitions: number }[] {
    return [...this.executions.values()].map((e) => ({ name: e.name, status: e.status, stateTransitions: e.stateTransitions }));
  }

  /** Serve the Step Functions JSON API on 127.0.0.1 for @aws-sdk/client-sfn. */
  async listen(options: { port?: number } = {}): Promise<{ endpoint: string }> {
    if (this.server) throw new Error(`already listening on ${this.server.endpoint}`);
    this.server = await serveJsonProtocol((operation, body) => this.handleApiCall(operation, body), options.port);
    return { endpoint: this.server.endpoint };
  }

  /**
   * Forget every execution, running or not, as a restart of the embedded stack does (nothing
   * persists): running ones stop without a trace, and DescribeExecution answers
   * ExecutionDoesNotExist for all of them. Answers how many were running.
   */
  forgetExecutions(): number {
    let running = 0;
    for (const execution of this.executions.values()) {
      if (execution.status === 'RUNNING') running++;
      // Quietly: no end event, as a killed process sends none.
      execution.status = 'ABORTED';
      execution.cancelTimeout?.();
      for (const attempt of [...execution.attempts]) attempt.finish({ error: fatalError('States.Runtime', 'execution forgotten') }, 'GONE');
      execution.abort?.();
    }
    this.executions.clear();
    return running;
  }

  /** Stops every running execution (ABORTED) and the HTTP server. */
  async close(): Promise<void> {
    for (const execution of this.executions.values()) {
      this.finish(execution, 'ABORTED', { cause: 'local Step Functions closed' });
    }
    const server = this.server;
    this.server = undefined;
    await server?.close();
  }

  private describeForApi(e: ExecutionDescription): Record<string, unknown> {
    return {
      executionArn: e.executionArn,
      stateMachineArn: e.stateMachineArn,
      name: e.name,
      status: e.status,
      startDate: epochSeconds(e.startDate),
      stopDate: epochSeconds(e.stopDate),
      input: e.input,
      inputDetails: { included: true },
      output: e.output,
      ...(e.output !== undefined ? { outputDetails: { included: true } } : {}),
      error: e.error,
      cause: e.cause,
    };
  }

  /** One API operation, body and result as the JSON protocol carries them. */
  handleApiCall(operation: string, body: Record<string, unknown>): unknown {
    switch (operation) {
      case 'StartExecution': {
        const name = stringArg(body, 'name');
        const input = stringArg(body, 'input');
        const started = this.startExecution({
          stateMachineArn: stringArg(body, 'stateMachineArn', true),
          ...(name !== undefined ? { name } : {}),
          ...(input !== undefined ? { input } : {}),
        });
        return { executionArn: started.executionArn, startDate: epochSeconds(started.startDate) };
      }
      case 'DescribeExecution':
        return this.describeForApi(this.describeExecution(stringArg(body, 'executionArn', true)));
      case 'StopExecution': {
        const { stopDate } = this.stopExecution(stringArg(body, 'executionArn', true), stringArg(body, 'error'), stringArg(body, 'cause'));
        return { stopDate: epochSeconds(stopDate) };
      }
      case 'ListExecutions': {
        const statusFilter = stringArg(body, 'statusFilter') as ExecutionStatus | undefined;
        const all = this.listExecutions({ stateMachineArn: stringArg(body, 'stateMachineArn', true), ...(statusFilter ? { statusFilter } : {}) });
        const maxResults = typeof body.maxResults === 'number' && body.maxResults > 0 ? Math.min(body.maxResults, 1000) : 100;
        const offset = Number(stringArg(body, 'nextToken') ?? '0');
        if (!Number.isInteger(offset) || offset < 0) throw new SfnError('InvalidToken', 'Invalid nextToken');
        const page = all.slice(offset, offset + maxResults);
        return {
          executions: page.map((e) => ({
            executionArn: e.executionArn,
            stateMachineArn: e.stateMachineArn,
            name: e.name,
            status: e.status,
            startDate: epochSeconds(e.startDate),
            stopDate: epochSeconds(e.stopDate),
          })),
          ...(offset + maxResults < all.length ? { nextToken: String(offset + maxResults) } : {}),
        };
      }
      case 'SendTaskSuccess':
        this.sendTaskSuccess(stringArg(body, 'taskToken', true), stringArg(body, 'output', true));
        return {};
      case 'SendTaskFailure':
        this.sendTaskFailure(stringArg(body, 'taskToken', true), stringArg(body, 'error'), stringArg(body, 'cause'));
        return {};
      case 'SendTaskHeartbeat':
        this.sendTaskHeartbeat(stringArg(body, 'taskToken', true));
        return {};
      case 'ListStateMachines':
        return {
          stateMachines: this.listStateMachines().map((m) => ({ stateMachineArn: m.stateMachineArn, name: m.name, type: m.type, creationDate: epochSeconds(m.creationDate) })),
        };
      case 'DescribeStateMachine': {
        const m = this.describeStateMachine(stringArg(body, 'stateMachineArn', true));
        return { ...m, creationDate: epochSeconds(m.creationDate) };
      }
      default:
        throw new SfnError('UnknownOperationException', `operation ${operation} is not served by the local Step Functions`);
    }
  }
}
