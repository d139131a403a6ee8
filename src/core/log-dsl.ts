// A tiny structured language for conditional writes on one DynamoDB item, and its two interpreters:
// `toDynamo` (expressions for lib-dynamodb and Step Functions) and `evaluate` / `apply` (over a
// plain JS object, for the in-memory adapters). The table of state changes (log-transitions.ts)
// is written in it once, so DynamoDB, memory and the state machine cannot drift apart.
// Pure: no I/O, no clock.

/** A document path: one top-level attribute name, or attribute then map keys (`['votes', participant]`). */
export type Path = string | readonly string[];

export type Comparison = 'eq' | 'lt' | 'le' | 'gt' | 'ge';

export type Condition =
  | { op: Comparison; path: Path; value: unknown }
  | { op: 'exists' | 'notExists'; path: Path }
  | { op: 'and' | 'or'; of: readonly Condition[] };

export type Update =
  | { op: 'set'; path: Path; value: unknown }
  | { op: 'remove'; path: Path }
  /** Add a number; an absent attribute counts as 0 (DynamoDB's ADD). */
  | { op: 'add'; path: Path; value: number };

export const eq = (path: Path, value: unknown): Condition => ({ op: 'eq', path, value });
export const lt = (path: Path, value: unknown): Condition => ({ op: 'lt', path, value });
export const le = (path: Path, value: unknown): Condition => ({ op: 'le', path, value });
export const gt = (path: Path, value: unknown): Condition => ({ op: 'gt', path, value });
export const ge = (path: Path, value: unknown): Condition => ({ op: 'ge', path, value });
export const exists = (path: Path): Condition => ({ op: 'exists', path });
export const notExists = (path: Path): Condition => ({ op: 'notExists', path });
export const and = (...of: Condition[]): Condition => ({ op: 'and', of });
export const or = (...of: Condition[]): Condition => ({ op: 'or', of });
export const set = (path: Path, value: unknown): Update => ({ op: 'set', path, value });
export const remove = (path: Path): Update => ({ op: 'remove', path });
export const add = (path: Path, value: number): Update => ({ op: 'add', path, value });

const segments = (path: Path): readonly string[] => (typeof path === 'string' ? [path] : path);

/**
 * Another attribute of the same item as the right side of a comparison (`ok = req`): attribute against
 * attribute, so a condition never depends on a number the writer passes in.
 */
export class AttrRef {
  constructor(readonly path: Path) {}
}
export const attr = (path: Path): AttrRef => new AttrRef(path);

// ---------------------------------------------------------------------------------------------
// DynamoDB

export interface DynamoExpressions<V = unknown> {
  ConditionExpression: string;
  /** Absent for a put (the item is written whole). */
  UpdateExpression?: string;
  ExpressionAttributeNames: Record<string, string>;
  /** Absent when no value is used: DynamoDB rejects an empty map. */
  ExpressionAttributeValues?: Record<string, V>;
}

const DYNAMO_COMPARISON: Record<Comparison, string> = { eq: '=', lt: '<', le: '<=', gt: '>', ge: '>=' };
const SAFE_ALIAS = /^[A-Za-z][A-Za-z0-9_]*$/;

/**
 * Expressions for a condition and (optionally) an update. Every path segment is aliased (`#status`,
 * `#votes.#x0` for a key that is no identifier), so reserved words and dashes need no care. Values
 * are named `:v0`, `:v1`... in order of first use; the same value (===) used twice shares a name.
 * `V` is whatever the caller puts in as values (plain JS for lib-dynamodb, DynamoAttributeValue in CDK).
 */
export function toDynamo<V = unknown>(condition: Condition, update?: readonly Update[]): DynamoExpressions<V> {
  const names = new Map<string, string>(); // segment -> alias
  const aliases = new Set<string>();
  const values: unknown[] = [];

  const alias = (segment: string): string => {
    const known = names.get(segment);
    if (known) return known;
    let name = SAFE_ALIAS.test(segment) ? `#${segment}` : '';
    for (let i = 0; name === '' || aliases.has(name); i++) name = `#x${i}`;
    names.set(segment, name);
    aliases.add(name);
    return name;
  };
  const path = (p: Path): string => segments(p).map(alias).join('.');
  const value = (v: unknown): string => {
    if (v instanceof AttrRef) return path(v.path);
    let i = values.indexOf(v);
    if (i < 0) i = values.push(v) - 1;
    return `:v${i}`;
  };

  const cond = (c: Condition): string => {
    switch (c.op) {
      case 'exists':
        return `attribute_exists(${path(c.path)})`;
      case 'notExists':
        return `attribute_not_exists(${path(c.path)})`;
      case 'and':
      case 'or':
        if (c.of.length === 0) throw new Error(`an empty ${c.op} has no DynamoDB expression`);
        // One operand is that operand: DynamoDB refuses the redundant parentheses ((x)) it would get.
        if (c.of.length === 1) return cond(c.of[0]!);
        return c.of.map((x) => (x.op === 'and' || x.op === 'or' ? `(${cond(x)})` : cond(x))).join(c.op === 'and' ? ' AND ' : ' OR ');
      default:
        return `${path(c.path)} ${DYNAMO_COMPARISON[c.op]} ${value(c.value)}`;
    }
  };

  const ConditionExpression = cond(condition);
  let UpdateExpression: string | undefined;
  if (update) {
    const clauses = { SET: [] as string[], REMOVE: [] as string[], ADD: [] as string[] };
    for (const u of update) {
      if (u.op === 'set') clauses.SET.push(`${path(u.path)} = ${value(u.value)}`);
      else if (u.op === 'remove') clauses.REMOVE.push(path(u.path));
      else clauses.ADD.push(`${path(u.path)} ${value(u.value)}`);
    }
    UpdateExpression = Object.entries(clauses)
      .filter(([, parts]) => parts.length > 0)
      .map(([verb, parts]) => `${verb} ${parts.join(', ')}`)
      .join(' ');
    if (UpdateExpression === '') throw new Error('an update needs at least one action');
  }
  return {
    ConditionExpression,
    ...(UpdateExpression === undefined ? {} : { UpdateExpression }),
    ExpressionAttributeNames: Object.fromEntries([...names].map(([segment, name]) => [name, segment])),
    ...(values.length === 0 ? {} : { ExpressionAttributeValues: Object.fromEntries(values.map((v, i) => [`:v${i}`, v as V])) }),
  };
}

// ---------------------------------------------------------------------------------------------
// Plain JS objects, with DynamoDB's semantics

type Doc = Record<string, unknown>;

function lookup(item: Doc | undefined, p: Path): unknown {
  let at: unknown = item;
  for (const s of segments(p)) {
    if (typeof at !== 'object' || at === null || Array.isArray(at)) return undefined;
    at = Object.prototype.hasOwnProperty.call(at, s) ? (at as Doc)[s] : undefined;
  }
  return at;
}

/** DynamoDB compares a string with a string, a number with a number; anything else is false. */
function compare(op: Comparison, a: unknown, b: unknown): boolean {
  if (op === 'eq') return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
  const comparable = (typeof a === 'string' && typeof b === 'string') || (typeof a === 'number' && typeof b === 'number');
  if (!comparable) return false;
  // Strings compare by code unit, which for the ASCII this log stores (ISO times, ids) is DynamoDB's byte order.
  const x = a as string | number;
  const y = b as string | number;
  return op === 'lt' ? x < y : op === 'le' ? x <= y : op === 'gt' ? x > y : x >= y;
}

/** Does the condition hold for `item` (undefined: no item)? */
export function evaluate(condition: Condition, item: Doc | undefined): boolean {
  switch (condition.op) {
    case 'exists':
      return lookup(item, condition.path) !== undefined;
    case 'notExists':
      return lookup(item, condition.path) === undefined;
    case 'and':
      return condition.of.every((c) => evaluate(c, item));
    case 'or':
      return condition.of.some((c) => evaluate(c, item));
    default:
      return compare(condition.op, lookup(item, condition.path), condition.value instanceof AttrRef ? lookup(item, condition.value.path) : condition.value);
  }
}

/**
 * The item after the update (a new object; `item` is not changed). Like DynamoDB, a nested path
 * needs its parent map to exist, ADD needs a number, and undefined values are dropped.
 */
export function apply(update: readonly Update[], item: Doc): Doc {
  const next = structuredClone(item);
  for (const u of update) {
    const path = segments(u.path);
    const parent = path.slice(0, -1).reduce<unknown>((at, s) => (typeof at === 'object' && at !== null ? (at as Doc)[s] : undefined), next);
    if (typeof parent !== 'object' || parent === null || Array.isArray(parent)) {
      throw new Error(`the document path ${path.join('.')} is invalid for update: its parent is not a map`);
    }
    const key = path[path.length - 1]!;
    const map = parent as Doc;
    if (u.op === 'remove') {
      delete map[key];
    } else if (u.op === 'add') {
      const current = map[key] ?? 0;
      if (typeof current !== 'number') throw new Error(`ADD ${path.join('.')}: the attribute is not a number`);
      map[key] = current + u.value;
    } else if (u.value === undefined) {
      throw new Error(`SET ${path.join('.')}: an undefined value`);
    } else {
      map[key] = withoutUndefined(u.value);
    }
  }
  return next;
}

/** A deep copy without undefined fields: what a document client with removeUndefinedValues stores. */
export function withoutUndefined<T>(value: T): T {
  if (Array.isArray(value)) return value.map(withoutUndefined) as T;
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.entries(value as Doc)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, withoutUndefined(v)]),
    ) as T;
  }
  return value;
}
