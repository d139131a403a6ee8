// The pieces of Amazon States Language (JSONPath flavour) the in-memory Step Functions evaluates:
// paths, Parameters with `.$` keys, intrinsic functions, ResultPath, Choice rules, error matching.
// Pure: no clock, no I/O. Unsupported constructs throw, so a definition that grows past what this
// models fails loudly instead of running differently from AWS.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** An ASL error: `name` is what Retry and Catch match (States.Timeout, DynamoDB.ConditionalCheckFailedException ...). */
export class StatesError extends Error {
  constructor(name: string, override readonly cause: string) {
    super(cause);
    this.name = name;
  }
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Through JSON, as over the wire: neither side can alias the other's objects. */
export function toJson(value: unknown): Json {
  return value === undefined ? null : (JSON.parse(JSON.stringify(value)) as Json);
}

type Segment = string | number;

/** `$.a.b[0]['c d']` -> ['a', 'b', 0, 'c d']; only the plain reference paths ASL allows. */
export function parsePath(path: string): { root: '$' | '$$'; segments: Segment[] } {
  const root = path.startsWith('$$') ? '$$' : path.startsWith('$') ? '$' : undefined;
  if (!root) throw new StatesError('States.Runtime', `not a JSONPath: ${path}`);
  const segments: Segment[] = [];
  const pattern = /\.([A-Za-z_][\w-]*)|\[(\d+)\]|\['([^']*)'\]/y;
  pattern.lastIndex = root.length;
  while (pattern.lastIndex < path.length) {
    const m = pattern.exec(path);
    if (!m) throw new StatesError('States.Runtime', `unsupported JSONPath (only .name, [n] and ['name']): ${path}`);
    segments.push(m[1] ?? (m[2] !== undefined ? Number(m[2]) : m[3]!));
  }
  return { root, segments };
}

/** The value at `path`; a path that selects nothing is States.Runtime, as in AWS. */
export function readPath(input: Json, context: Json, path: string): Json {
  const { root, segments } = parsePath(path);
  let value: Json = root === '$$' ? context : input;
  for (const segment of segments) {
    const next: Json | undefined =
      typeof segment === 'number' ? (Array.isArray(value) ? value[segment] : undefined) : isObject(value) ? value[segment] : undefined;
    if (next === undefined) throw new StatesError('States.Runtime', `the JSONPath ${path} could not be found in the input`);
    value = next;
  }
  return value;
}

function hasPath(input: Json, path: string): boolean {
  try {
    readPath(input, null, path);
    return true;
  } catch {
    return false;
  }
}

/** Parameters / ResultSelector: keys ending in `.$` take a path's value or an intrinsic's result. */
export function evaluateTemplate(template: Json, input: Json, context: Json): Json {
  if (Array.isArray(template)) return template.map((t) => evaluateTemplate(t, input, context));
  if (!isObject(template)) return template;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(template)) {
    if (!key.endsWith('.$')) {
      out[key] = evaluateTemplate(value, input, context);
      continue;
    }
    if (typeof value !== 'string') throw new StatesError('States.Runtime', `the value of ${key} must be a path or an intrinsic function`);
    out[key.slice(0, -2)] = value.startsWith('States.') ? evaluateIntrinsic(value, input, context) : readPath(input, context, value);
  }
  return out;
}

/** ResultPath: null keeps the input, `$` replaces it, `$.a.b` sets a field of a copy of it. */
export function applyResultPath(input: Json, result: Json, resultPath: string | null | undefined): Json {
  if (resultPath === null) return input;
  const { root, segments } = parsePath(resultPath ?? '$');
  if (root !== '$') throw new StatesError('States.Runtime', `ResultPath cannot refer to the context: ${resultPath}`);
  if (segments.length === 0) return result;
  const copy = structuredClone(input);
  if (!isObject(copy)) throw new StatesError('States.ResultPathMatchFailure', `ResultPath ${resultPath} needs an object input`);
  let target: JsonObject = copy;
  for (const [i, segment] of segments.entries()) {
    if (typeof segment === 'number') throw new StatesError('States.ResultPathMatchFailure', `ResultPath ${resultPath} indexes an array`);
    if (i === segments.length - 1) {
      target[segment] = result;
      break;
    }
    const next = target[segment] ?? {};
    if (!isObject(next)) throw new StatesError('States.ResultPathMatchFailure', `ResultPath ${resultPath} goes through a non-object`);
    target[segment] = next;
    target = next;
  }
  return copy;
}

/** InputPath / OutputPath: null is {}, absent is $. */
export function selectPath(value: Json, context: Json, path: string | null | undefined): Json {
  if (path === null) return {};
  return readPath(value, context, path ?? '$');
}

// ---- intrinsic functions ---------------------------------------------------------------------

type Arg = { kind: 'string'; raw: string } | { kind: 'value'; value: Json } | { kind: 'path'; path: string } | { kind: 'call'; name: string; args: Arg[] };

function parseIntrinsic(text: string): Arg {
  let i = 0;
  const fail = (why: string): never => {
    throw new StatesError('States.Runtime', `intrinsic function ${text}: ${why} at ${i}`);
  };
  const spaces = (): void => {
    while (text[i] === ' ') i++;
  };
  const arg = (): Arg => {
    spaces();
    if (text[i] === "'") {
      let raw = '';
      for (i++; text[i] !== "'"; i++) {
        if (i >= text.length) fail('unterminated string');
        if (text[i] === '\\') raw += text[i++];
        raw += text[i];
      }
      i++;
      return { kind: 'string', raw };
    }
    if (text[i] === '$') {
      const start = i;
      while (i < text.length && text[i] !== ',' && text[i] !== ')') i++;
      return { kind: 'path', path: text.slice(start, i).trim() };
    }
    const name = /^States\.\w+/.exec(text.slice(i))?.[0];
    if (name) {
      i += name.length;
      spaces();
      if (text[i++] !== '(') fail('expected (');
      const args: Arg[] = [];
      spaces();
      if (text[i] === ')') i++;
      else
        for (;;) {
          args.push(arg());
          spaces();
          const c = text[i++];
          if (c === ')') break;
          if (c !== ',') fail('expected , or )');
        }
      return { kind: 'call', name, args };
    }
    const literal = /^(-?\d+(\.\d+)?|true|false|null)/.exec(text.slice(i))?.[0];
    if (!literal) return fail('unexpected character');
    i += literal.length;
    return { kind: 'value', value: JSON.parse(literal) as Json };
  };
  const parsed = arg();
  spaces();
  if (i !== text.length) fail('trailing characters');
  return parsed;
}

function unescape(raw: string): string {
  return raw.replace(/\\(.)/g, '$1');
}

function argValue(a: Arg, input: Json, context: Json): Json {
  switch (a.kind) {
    case 'string':
      return unescape(a.raw);
    case 'value':
      return a.value;
    case 'path':
      return readPath(input, context, a.path);
    case 'call':
      return call(a, input, context);
  }
}

function format(template: string, values: Json[]): string {
  let out = '';
  let next = 0;
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c === '\\') out += template[++i] ?? '';
    else if (c === '{' && template[i + 1] === '}') {
      if (next >= values.length) throw new StatesError('States.IntrinsicFailure', 'States.Format has more {} than arguments');
      const v = values[next++]!;
      out += typeof v === 'string' ? v : JSON.stringify(v);
      i++;
    } else out += c;
  }
  if (next !== values.length) throw new StatesError('States.IntrinsicFailure', 'States.Format has more arguments than {}');
  return out;
}

function call(a: Extract<Arg, { kind: 'call' }>, input: Json, context: Json): Json {
  const values = () => a.args.map((x) => argValue(x, input, context));
  switch (a.name) {
    case 'States.Format': {
      const [template, ...rest] = a.args;
      if (template?.kind !== 'string') throw new StatesError('States.IntrinsicFailure', 'States.Format needs a string literal first');
      return format(template.raw, rest.map((x) => argValue(x, input, context)));
    }
    case 'States.JsonToString':
      return JSON.stringify(values()[0]);
    case 'States.StringToJson': {
      const [s] = values();
      if (typeof s !== 'string') throw new StatesError('States.IntrinsicFailure', 'States.StringToJson needs a string');
      return JSON.parse(s) as Json;
    }
    case 'States.Array':
      return values();
    default:
      throw new StatesError('States.Runtime', `intrinsic function ${a.name} is not modelled in memory`);
  }
}

export function evaluateIntrinsic(text: string, input: Json, context: Json): Json {
  return argValue(parseIntrinsic(text), input, context);
}

// ---- Choice rules ----------------------------------------------------------------------------

type Compare = (a: Json, b: Json) => boolean;
const typed =
  (type: 'string' | 'number' | 'boolean', test: (a: never, b: never) => boolean): Compare =>
  (a, b) =>
    typeof a === type && typeof b === type && test(a as never, b as never);
const COMPARATORS: Record<string, Compare> = {
  StringEquals: typed('string', (a: string, b: string) => a === b),
  StringLessThan: typed('string', (a: string, b: string) => a < b),
  StringGreaterThan: typed('string', (a: string, b: string) => a > b),
  StringLessThanEquals: typed('string', (a: string, b: string) => a <= b),
  StringGreaterThanEquals: typed('string', (a: string, b: string) => a >= b),
  NumericEquals: typed('number', (a: number, b: number) => a === b),
  NumericLessThan: typed('number', (a: number, b: number) => a < b),
  NumericGreaterThan: typed('number', (a: number, b: number) => a > b),
  NumericLessThanEquals: typed('number', (a: number, b: number) => a <= b),
  NumericGreaterThanEquals: typed('number', (a: number, b: number) => a >= b),
  BooleanEquals: typed('boolean', (a: boolean, b: boolean) => a === b),
};

const TYPE_TESTS: Record<string, (v: Json) => boolean> = {
  IsNull: (v) => v === null,
  IsString: (v) => typeof v === 'string',
  IsNumeric: (v) => typeof v === 'number',
  IsBoolean: (v) => typeof v === 'boolean',
};

/** One Choice rule (And / Or / Not / Variable with one comparator). */
export function choiceMatches(rule: JsonObject, input: Json, context: Json): boolean {
  if (Array.isArray(rule.And)) return rule.And.every((r) => choiceMatches(r as JsonObject, input, context));
  if (Array.isArray(rule.Or)) return rule.Or.some((r) => choiceMatches(r as JsonObject, input, context));
  if (isObject(rule.Not)) return !choiceMatches(rule.Not, input, context);
  const variable = rule.Variable;
  if (typeof variable !== 'string') throw new StatesError('States.Runtime', `a Choice rule without Variable: ${JSON.stringify(rule)}`);
  if (typeof rule.IsPresent === 'boolean') return hasPath(input, variable) === rule.IsPresent;
  const value = readPath(input, context, variable);
  for (const [key, expected] of Object.entries(rule)) {
    if (key === 'Variable' || key === 'Next') continue;
    const test = TYPE_TESTS[key];
    if (test && typeof expected === 'boolean') return test(value) === expected;
    const byPath = key.endsWith('Path');
    const compare = COMPARATORS[byPath ? key.slice(0, -4) : key];
    if (!compare) throw new StatesError('States.Runtime', `Choice comparator ${key} is not modelled in memory`);
    return compare(value, byPath ? readPath(input, context, expected as string) : expected);
  }
  throw new StatesError('States.Runtime', `a Choice rule without a comparator: ${JSON.stringify(rule)}`);
}

// ---- errors ------------------------------------------------------------------------------------

/**
 * Whether a Retrier's or Catcher's ErrorEquals takes `error`. States.ALL takes everything but
 * States.Runtime (never retried or caught); States.TaskFailed everything a task raises but its
 * timeouts; States.Timeout a heartbeat timeout too.
 */
export function errorMatches(errorEquals: readonly string[], error: string): boolean {
  if (error === 'States.Runtime') return false;
  const timeout = error === 'States.Timeout' || error === 'States.HeartbeatTimeout';
  return errorEquals.some(
    (e) =>
      e === error ||
      e === 'States.ALL' ||
      (e === 'States.TaskFailed' && !timeout && !error.startsWith('States.') ) ||
      (e === 'States.Timeout' && error === 'States.HeartbeatTimeout'),
  );
}
