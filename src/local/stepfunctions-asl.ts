// Turns an ASL (JSONPath) definition into one aws-local-stepfunctions runs with AWS semantics.
//
// The library overrides Task states by state name, evaluates TimeoutSecondsPath on the input after
// Parameters, times every Task out at 60 s unless told otherwise, has no task tokens, heartbeats or
// $$.State, and builds a fresh $$.Execution for every Map iteration and Parallel branch. So the
// definition it receives is rewritten here:
// - every Task gets a huge static TimeoutSeconds (ours are enforced by the caller) and loses
//   TimeoutSeconds(Path)/HeartbeatSeconds(Path); the *Path ones become hidden Parameters fields,
//   evaluated on the state's raw input as AWS does (InputPath is folded into Parameters for that);
// - `$$.Execution` and `$$.State` become context keys the library never rebuilds: one execution-wide
//   object and one object per state, which the caller updates when the state is entered;
// - every Retry/Catch naming States.Timeout also names States.HeartbeatTimeout (AWS documents a
//   heartbeat timeout as a kind of States.Timeout);
// - the execution-level TimeoutSeconds is removed (the library's timer overflows past 24.8 days).

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export type TaskKind = 'lambda:invoke' | 'lambda:invoke.waitForTaskToken' | 'lambda:function' | 'dynamodb';
export type DynamoOperation = 'getItem' | 'putItem' | 'updateItem' | 'deleteItem';

export interface TaskSpec {
  name: string;
  resource: string;
  kind: TaskKind;
  dynamoOperation?: DynamoOperation;
  timeoutSeconds?: number;
  heartbeatSeconds?: number;
  /** Parameters carry HIDDEN_TIMEOUT/HIDDEN_HEARTBEAT, to be read and removed before the task runs. */
  hasHiddenFields: boolean;
  /** The state had no Parameters: the effective input travels in HIDDEN_INPUT. */
  wrapsInput: boolean;
}

export interface CompiledDefinition {
  /** Rewritten definition, plain JSON: clone it per execution before installing entry hooks. */
  definition: JsonObject;
  tasks: Map<string, TaskSpec>;
  /** State name -> id used in the per-state context key (STATE_CONTEXT_PREFIX + id). */
  stateIds: Map<string, number>;
  timeoutSeconds?: number;
}

export const HIDDEN_TIMEOUT = '__sfnLocalTimeoutSeconds';
export const HIDDEN_HEARTBEAT = '__sfnLocalHeartbeatSeconds';
export const HIDDEN_INPUT = '__sfnLocalInput';
export const EXECUTION_CONTEXT_KEY = '__sfnLocalExecution';
export const STATE_CONTEXT_PREFIX = '__sfnLocalState';
/** Below setTimeout's 2^31-1 ms ceiling (a larger value fires at once), above any local run. */
export const LIBRARY_TASK_TIMEOUT_SECONDS = 2_000_000;

const LAMBDA_FUNCTION_ARN = /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+(:[A-Za-z0-9_$-]+)?$/;
const DYNAMO_RESOURCE = /^arn:aws[a-z-]*:states:::dynamodb:(getItem|putItem|updateItem|deleteItem)$/;
const LAMBDA_INVOKE = /^arn:aws[a-z-]*:states:::lambda:invoke$/;
const LAMBDA_INVOKE_CALLBACK = /^arn:aws[a-z-]*:states:::lambda:invoke\.waitForTaskToken$/;

export class DefinitionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidDefinition';
  }
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function classify(resource: string): Pick<TaskSpec, 'kind' | 'dynamoOperation'> | undefined {
  if (LAMBDA_INVOKE.test(resource)) return { kind: 'lambda:invoke' };
  if (LAMBDA_INVOKE_CALLBACK.test(resource)) return { kind: 'lambda:invoke.waitForTaskToken' };
  if (LAMBDA_FUNCTION_ARN.test(resource)) return { kind: 'lambda:function' };
  const dynamo = DYNAMO_RESOURCE.exec(resource);
  if (dynamo) return { kind: 'dynamodb', dynamoOperation: dynamo[1] as DynamoOperation };
  return undefined;
}

function hasParameter(parameters: Json | undefined, key: string): boolean {
  return isObject(parameters) && (key in parameters || `${key}.$` in parameters);
}

/** `$$.Execution` / `$$.State` -> context keys the library passes through untouched. */
function rewriteContextPath(path: string, stateId: number): string {
  return path.replace(/\$\$\.(Execution|State)(?![A-Za-z0-9_])/g, (_match, key: string) =>
    key === 'Execution' ? `$$.${EXECUTION_CONTEXT_KEY}` : `$$.${STATE_CONTEXT_PREFIX}${stateId}`,
  );
}

/** Rewrite path-valued entries (`key.$`) of a payload template; literal values stay literal. */
function rewriteTemplate(template: Json, rewrite: (path: string) => string): Json {
  if (Array.isArray(template)) return template.map((item) => rewriteTemplate(item, rewrite));
  if (!isObject(template)) return template;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(template)) {
    out[key] = key.endsWith('.$') && typeof value === 'string' ? rewrite(value) : rewriteTemplate(value, rewrite);
  }
  return out;
}

function rewriteChoiceRule(rule: Json, rewrite: (path: string) => string): Json {
  if (Array.isArray(rule)) return rule.map((r) => rewriteChoiceRule(r, rewrite));
  if (!isObject(rule)) return rule;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(rule)) {
    if (typeof value === 'string' && (key === 'Variable' || key.endsWith('Path'))) out[key] = rewrite(value);
    else if (key === 'And' || key === 'Or' || key === 'Not') out[key] = rewriteChoiceRule(value, rewrite);
    else out[key] = value;
  }
  return out;
}

/**
 * Re-root a path evaluated on the InputPath result so it evaluates on the raw input instead.
 * Intrinsic functions are scanned so that `$` inside their quoted string arguments is left alone.
 */
function prefixPath(path: string, inputPath: string): string {
  if (path.startsWith('$$')) return path;
  if (path.startsWith('$')) return inputPath + path.slice(1);
  let out = '';
  let quoted = false;
  for (let i = 0; i < path.length; i++) {
    const ch = path[i]!;
    if (quoted) {
      out += ch;
      if (ch === '\\' && i + 1 < path.length) out += path[++i];
      else if (ch === "'") quoted = false;
    } else if (ch === "'") {
      quoted = true;
      out += ch;
    } else if (ch === '$' && path[i + 1] === '$') {
      out += '$$';
      i++;
    } else if (ch === '$') {
      out += inputPath;
    } else {
      out += ch;
    }
  }
  return out;
}

function withHeartbeatTimeout(handlers: Json | undefined): Json | undefined {
  if (!Array.isArray(handlers)) return handlers;
  return handlers.map((handler) => {
    if (!isObject(handler) || !Array.isArray(handler.ErrorEquals)) return handler;
    const names = handler.ErrorEquals;
    if (!names.includes('States.Timeout') || names.includes('States.HeartbeatTimeout')) return handler;
    // Before States.ALL, which must stay last.
    const at = names.includes('States.ALL') ? names.indexOf('States.ALL') : names.length;
    return { ...handler, ErrorEquals: [...names.slice(0, at), 'States.HeartbeatTimeout', ...names.slice(at)] };
  });
}

interface CompileState {
  tasks: Map<string, TaskSpec>;
  stateIds: Map<string, number>;
  problems: string[];
  unsupported: string[];
}

function compileTask(name: string, state: JsonObject, spec: Omit<TaskSpec, 'hasHiddenFields' | 'wrapsInput'>, c: CompileState): JsonObject {
  const out: JsonObject = { ...state };
  delete out.TimeoutSeconds;
  delete out.TimeoutSecondsPath;
  delete out.HeartbeatSeconds;
  delete out.HeartbeatSecondsPath;
  out.TimeoutSeconds = LIBRARY_TASK_TIMEOUT_SECONDS;
  const timeoutPath = typeof state.TimeoutSecondsPath === 'string' ? state.TimeoutSecondsPath : undefined;
  const heartbeatPath = typeof state.HeartbeatSecondsPath === 'string' ? state.HeartbeatSecondsPath : undefined;
  const hidden: JsonObject = {};
  if (timeoutPath) hidden[`${HIDDEN_TIMEOUT}.$`] = timeoutPath;
  if (heartbeatPath) hidden[`${HIDDEN_HEARTBEAT}.$`] = heartbeatPath;
  let wrapsInput = false;
  if (timeoutPath || heartbeatPath) {
    const inputPath = 'InputPath' in state ? state.InputPath : '$';
    if (isObject(state.Parameters)) {
      if (inputPath === null) {
        c.problems.push(`state "${name}": InputPath null with Parameters and a *SecondsPath is not supported locally`);
      } else if (typeof inputPath === 'string' && inputPath !== '$') {
        out.Parameters = rewriteTemplate(state.Parameters, (p) => prefixPath(p, inputPath));
      }
      out.Parameters = { ...(out.Parameters as JsonObject), ...hidden };
    } else {
      wrapsInput = true;
      out.Parameters = {
        ...(inputPath === null ? { [HIDDEN_INPUT]: {} } : { [`${HIDDEN_INPUT}.$`]: typeof inputPath === 'string' ? inputPath : '$' }),
        ...hidden,
      };
    }
    delete out.InputPath;
  }
  const timeoutSeconds = typeof state.TimeoutSeconds === 'number' ? state.TimeoutSeconds : undefined;
  const heartbeatSeconds = typeof state.HeartbeatSeconds === 'number' ? state.HeartbeatSeconds : undefined;
  c.tasks.set(name, {
    ...spec,
    ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
    ...(heartbeatSeconds !== undefined ? { heartbeatSeconds } : {}),
    hasHiddenFields: Boolean(timeoutPath || heartbeatPath),
    wrapsInput,
  });
  return out;
}

function compileStates(machine: JsonObject, where: string, c: CompileState): JsonObject {
  if (machine.QueryLanguage === 'JSONata') c.problems.push(`${where}: JSONata is not supported locally (use JSONPath)`);
  const states = machine.States;
  if (!isObject(states)) {
    c.problems.push(`${where}: States is missing`);
    return machine;
  }
  const outStates: JsonObject = {};
  for (const [name, raw] of Object.entries(states)) {
    if (!isObject(raw)) {
      c.problems.push(`state "${name}" is not an object`);
      continue;
    }
    if (c.stateIds.has(name)) c.problems.push(`state name "${name}" is used twice (names must be unique in the whole state machine)`);
    const id = c.stateIds.size;
    c.stateIds.set(name, id);
    if (raw.QueryLanguage === 'JSONata') c.problems.push(`state "${name}": JSONata is not supported locally (use JSONPath)`);

    let state: JsonObject = { ...raw };
    if (state.Type === 'Task') {
      const resource = typeof state.Resource === 'string' ? state.Resource : '';
      const kind = classify(resource);
      if (!kind) {
        c.unsupported.push(`"${name}" (${resource || 'no Resource'})`);
      } else {
        if ((kind.kind === 'lambda:invoke' || kind.kind === 'lambda:invoke.waitForTaskToken') && !hasParameter(state.Parameters, 'FunctionName')) {
          c.problems.push(`state "${name}": ${resource} needs Parameters.FunctionName`);
        }
        if (kind.kind === 'dynamodb' && !hasParameter(state.Parameters, 'TableName')) {
          c.problems.push(`state "${name}": ${resource} needs Parameters.TableName`);
        }
        state = compileTask(name, state, { name, resource, ...kind }, c);
      }
      for (const key of ['Retry', 'Catch'] as const) {
        const handlers = withHeartbeatTimeout(state[key]);
        if (handlers !== undefined) state[key] = handlers;
      }
    }

    const rewrite = (path: string): string => rewriteContextPath(path, id);
    for (const [key, value] of Object.entries(state)) {
      if (key === 'Parameters' || key === 'ResultSelector' || key === 'ItemSelector') state[key] = rewriteTemplate(value, rewrite);
      else if (key === 'Choices' && Array.isArray(value)) state[key] = value.map((rule) => rewriteChoiceRule(rule, rewrite));
      else if (typeof value === 'string' && key.endsWith('Path')) state[key] = rewrite(value);
    }
    for (const key of ['Iterator', 'ItemProcessor'] as const) {
      const inner = state[key];
      if (isObject(inner)) state[key] = compileStates(inner, `state "${name}".${key}`, c);
    }
    if (Array.isArray(state.Branches)) {
      state.Branches = state.Branches.map((branch, i) => (isObject(branch) ? compileStates(branch, `state "${name}".Branches[${i}]`, c) : branch));
    }
    outStates[name] = state;
  }
  return { ...machine, States: outStates };
}

/**
 * Check and rewrite a definition. Throws DefinitionError naming every Task state whose Resource is
 * not served locally, and every other construct this stack cannot run faithfully.
 */
export function compileDefinition(definition: unknown): CompiledDefinition {
  let parsed: unknown = definition;
  if (typeof definition === 'string') {
    try {
      parsed = JSON.parse(definition);
    } catch (err) {
      throw new DefinitionError(`definition is not JSON: ${(err as Error).message}`);
    }
  }
  if (!isObject(parsed)) throw new DefinitionError('definition must be a JSON object');
  const c: CompileState = { tasks: new Map(), stateIds: new Map(), problems: [], unsupported: [] };
  const compiled = compileStates(parsed, 'definition', c);
  if (c.unsupported.length > 0) {
    c.problems.unshift(`unsupported Task resource in state ${c.unsupported.join(', ')}; supported: lambda:invoke, lambda:invoke.waitForTaskToken, a Lambda function ARN, dynamodb:getItem/putItem/updateItem/deleteItem`);
  }
  if (c.problems.length > 0) throw new DefinitionError(c.problems.join('; '));
  const timeoutSeconds = typeof compiled.TimeoutSeconds === 'number' ? compiled.TimeoutSeconds : undefined;
  delete compiled.TimeoutSeconds;
  return { definition: compiled, tasks: c.tasks, stateIds: c.stateIds, ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}) };
}

/**
 * Replace every `States[name]` entry of `definition` (nested ones included) with a getter that
 * reports the read: the library reads `States[next]` exactly once per state entered, right before
 * it evaluates that state's paths, which makes the read the moment the state is entered.
 * Mutates `definition`: pass a per-execution clone.
 */
export function installEntryHooks(definition: JsonObject, onEnter: (stateName: string) => void): void {
  const states = definition.States;
  if (!isObject(states)) return;
  for (const [name, state] of Object.entries(states)) {
    if (!isObject(state)) continue;
    for (const key of ['Iterator', 'ItemProcessor'] as const) {
      const inner = state[key];
      if (isObject(inner)) installEntryHooks(inner, onEnter);
    }
    if (Array.isArray(state.Branches)) for (const branch of state.Branches) if (isObject(branch)) installEntryHooks(branch, onEnter);
    Object.defineProperty(states, name, {
      enumerable: true,
      configurable: true,
      get() {
        onEnter(name);
        return state;
      },
    });
  }
}
