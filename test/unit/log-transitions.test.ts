// The log's table of state changes and its DSL: both interpreters (toDynamo for DynamoDB, evaluate and
// apply for plain objects), attribute-against-attribute comparisons, the commit point's conditions as
// the table writes them, and the status graph's assertions. test/contract/log-dsl.test.ts checks that
// DynamoDB (dynalite) and `evaluate` agree on random conditions.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AttrRef, add, and, apply, attr, eq, evaluate, exists, ge, gt, le, lt, notExists, or, remove, set, toDynamo, type Condition } from '../../src/core/log-dsl';
import {
  LOG_TRANSITIONS,
  STATUS_GRAPH,
  assertTransition,
  GROUP_KEPT_DAYS,
  claimGroupWrite,
  finishIdempotencyKeyWrite,
  groupPk,
  keepItemWrite,
  supervisorName,
  type TransitionName,
  TransitionError,
} from '../../src/core/log-transitions';
import { DEFAULT_SUPERVISION, PHASE_STATUS, STATUS_PHASE, newTransaction, type TxRecord } from '../../src/core/transaction';

describe('toDynamo', () => {
  it('aliases every path segment, a key that is no identifier by number, and names each distinct value once', () => {
    const out = toDynamo(and(eq('status', 'PREPARING'), or(notExists(['votes', 'pay-ment']), le('updatedAt', 'PREPARING'))), [
      set(['votes', 'pay-ment'], { vote: 'YES' }),
      add('ok', 1),
      remove(['pending', 'pay-ment']),
    ]);
    expect(out).toEqual({
      ConditionExpression: '#status = :v0 AND (attribute_not_exists(#votes.#x0) OR #updatedAt <= :v0)',
      UpdateExpression: 'SET #votes.#x0 = :v1 REMOVE #pending.#x0 ADD #ok :v2',
      ExpressionAttributeNames: { '#status': 'status', '#votes': 'votes', '#x0': 'pay-ment', '#updatedAt': 'updatedAt', '#pending': 'pending', '#ok': 'ok' },
      ExpressionAttributeValues: { ':v0': 'PREPARING', ':v1': { vote: 'YES' }, ':v2': 1 },
    });
  });

  it('leaves out the values of a condition that has none', () => {
    expect(toDynamo(notExists('pk'))).toEqual({ ConditionExpression: 'attribute_not_exists(#pk)', ExpressionAttributeNames: { '#pk': 'pk' } });
  });

  it('renders attr() as another attribute of the item, never as a value', () => {
    const out = toDynamo(and(eq('ok', attr('req')), lt(['counts', 'a-b'], attr(['counts', 'limit'])), ge('n', 3)));
    expect(out).toEqual({
      ConditionExpression: '#ok = #req AND #counts.#x0 < #counts.#limit AND #n >= :v0',
      ExpressionAttributeNames: { '#ok': 'ok', '#req': 'req', '#counts': 'counts', '#x0': 'a-b', '#limit': 'limit', '#n': 'n' },
      ExpressionAttributeValues: { ':v0': 3 },
    });
    // A condition of attributes alone needs no values at all (DynamoDB rejects an empty map).
    expect(toDynamo(gt('ok', attr('req')))).toEqual({ ConditionExpression: '#ok > #req', ExpressionAttributeNames: { '#ok': 'ok', '#req': 'req' } });
  });

  it('writes an and/or of one operand as that operand: DynamoDB refuses redundant parentheses', () => {
    expect(toDynamo(or(or(and(eq('ok', attr('req')))), exists('ok'))).ConditionExpression).toBe('(#ok = #req) OR attribute_exists(#ok)');
    expect(toDynamo(and(exists('pk'), and(and(or(exists('a'), exists('b')))))).ConditionExpression).toBe('attribute_exists(#pk) AND (attribute_exists(#a) OR attribute_exists(#b))');
    expect(toDynamo(and(exists('pk'))).ConditionExpression).toBe('attribute_exists(#pk)');
  });

  it('refuses an empty and/or and an update without actions', () => {
    expect(() => toDynamo(and())).toThrow(/empty and/);
    expect(() => toDynamo(exists('pk'), [])).toThrow(/at least one action/);
  });
});

describe('evaluate and apply', () => {
  const item = { pk: 't', status: 'PREPARING', votes: { a: { vote: 'YES' } }, n: 2 };

  it('evaluates like DynamoDB: absent attributes compare false, strings only with strings', () => {
    expect(evaluate(and(exists('pk'), eq('status', 'PREPARING'), exists(['votes', 'a']), notExists(['votes', 'b'])), item)).toBe(true);
    expect(evaluate(eq('missing', undefined), item)).toBe(false);
    expect(evaluate(le('n', '3'), item)).toBe(false);
    expect(evaluate(le('n', 3), item)).toBe(true);
    expect(evaluate(exists('pk'), undefined)).toBe(false);
  });

  it('compares attribute against attribute: both must exist and be of one type', () => {
    const counts = { ok: 2, req: 3, s: 'b', t: 'a', zero: 0 };
    expect(evaluate(lt('ok', attr('req')), counts)).toBe(true);
    expect(evaluate(eq('ok', attr('req')), counts)).toBe(false);
    expect(evaluate(eq('ok', attr('req')), { ...counts, ok: 3 })).toBe(true);
    expect(evaluate(ge('req', attr('ok')), counts)).toBe(true);
    expect(evaluate(gt('s', attr('t')), counts)).toBe(true);
    // A number and a string, or an absent side, never compare true (whatever the operator).
    for (const c of [eq, lt, le, gt, ge]) {
      expect(evaluate(c('ok', attr('s')), counts)).toBe(false);
      expect(evaluate(c('ok', attr('absent')), counts)).toBe(false);
      expect(evaluate(c('absent', attr('zero')), counts)).toBe(false);
    }
    expect(attr('req')).toBeInstanceOf(AttrRef);
  });

  it('applies to a copy: ADD from nothing, REMOVE, SET into an existing map only', () => {
    const next = apply([add('count', 1), remove('n'), set(['votes', 'b'], { vote: 'NO', reason: undefined })], item);
    expect(next).toEqual({ pk: 't', status: 'PREPARING', votes: { a: { vote: 'YES' }, b: { vote: 'NO' } }, count: 1 });
    expect(item.n).toBe(2);
    expect(() => apply([set(['acks', 'a'], 1)], item)).toThrow(/parent is not a map/);
    expect(() => apply([add('status', 1)], item)).toThrow(/not a number/);
  });

  it('property: evaluate agrees with the DynamoDB expression read back by a tiny interpreter of its own', () => {
    // The expression toDynamo writes, evaluated by substituting names and values: the two
    // interpreters of one condition must say the same for any item (DynamoDB's side is checked
    // against dynalite in test/contract/log-dsl.test.ts).
    const value = fc.oneof(fc.integer({ min: -2, max: 2 }), fc.constantFrom('a', 'b'));
    const doc = fc.record({ x: fc.option(value, { nil: undefined }), y: fc.option(value, { nil: undefined }), z: fc.option(value, { nil: undefined }) });
    const path = fc.constantFrom('x', 'y', 'z');
    const leaf: fc.Arbitrary<Condition> = fc.oneof(
      fc.tuple(fc.constantFrom(eq, lt, le, gt, ge), path, fc.oneof(value, path.map((p) => attr(p)))).map(([c, p, v]) => c(p, v)),
      path.map(exists),
      path.map(notExists),
    );
    const condition = fc.oneof(leaf, fc.array(leaf, { minLength: 1, maxLength: 3 }).map((of) => and(...of)), fc.array(leaf, { minLength: 1, maxLength: 3 }).map((of) => or(...of)));
    fc.assert(
      fc.property(condition, doc, (c, d) => {
        const item = Object.fromEntries(Object.entries(d).filter(([, v]) => v !== undefined));
        expect(readBack(toDynamo(c), item)).toBe(evaluate(c, item));
      }),
      { numRuns: 500, seed: 7 },
    );
  });
});

/** Evaluates a flat ConditionExpression of the shapes toDynamo writes for one-segment paths. */
function readBack(expr: ReturnType<typeof toDynamo>, item: Record<string, unknown>): boolean {
  const operand = (token: string): unknown => (token.startsWith(':') ? expr.ExpressionAttributeValues?.[token] : item[expr.ExpressionAttributeNames[token]!]);
  const term = (t: string): boolean => {
    const fn = /^attribute_(not_)?exists\((#\w+)\)$/.exec(t);
    if (fn) return (operand(fn[2]!) !== undefined) !== Boolean(fn[1]);
    const [a, op, b] = t.split(' ') as [string, string, string];
    const x = operand(a);
    const y = operand(b);
    if (x === undefined || y === undefined || typeof x !== typeof y) return false;
    const l = x as number | string;
    const r = y as number | string;
    return op === '=' ? l === r : op === '<' ? l < r : op === '<=' ? l <= r : op === '>' ? l > r : l >= r;
  };
  const e = expr.ConditionExpression;
  if (e.includes(' OR ')) return e.split(' OR ').some(term);
  return e.split(' AND ').every(term);
}

const services = ['inventory', 'payment'];
const record = (): TxRecord =>
  newTransaction({
    txId: 'tx-00000001',
    request: { participants: services.map((service) => ({ service, operation: {} })), timeouts: { prepareSeconds: 10, commitSeconds: 30 } },
    nowMs: 1_000_000,
    requestHash: 'h',
    supervision: DEFAULT_SUPERVISION,
  });
type Doc = Record<string, unknown>;
/** One transition on a plain record: its write's condition, then its update (as the memory adapter does). */
const step = (item: Doc, write: { condition: Condition; update: readonly import('../../src/core/log-dsl').Update[] }): Doc | undefined =>
  evaluate(write.condition, item) ? apply(write.update, item) : undefined;
const T = LOG_TRANSITIONS;
const at = '2026-01-01T00:00:00.000Z';

describe('the table of state changes', () => {
  it('maps phases to statuses and back, once', () => {
    for (const [phase, status] of Object.entries(PHASE_STATUS)) expect(STATUS_PHASE[status]).toBe(phase);
  });

  it('keeps every edge of every state change in the status graph, and final statuses final', () => {
    for (const { edges } of Object.values(LOG_TRANSITIONS)) {
      for (const [from, to] of edges) expect(from === null ? to === 'PREPARING' : STATUS_GRAPH[from].includes(to)).toBe(true);
    }
    expect(STATUS_GRAPH.COMMITTED).toEqual([]);
    expect(STATUS_GRAPH.ABORTED).toEqual([]);
    expect(Object.keys(LOG_TRANSITIONS).sort()).toEqual(['create', 'decideAbort', 'decideCommit', 'finalize', 'markInDoubt', 'park', 'recordAck', 'recordNo', 'recordYes', 'release'].sort());
  });

  it('guards every update with the record existing', () => {
    const updates = [
      T.recordYes.write('a', { vote: 'YES', at }, 1),
      T.recordNo.write('a', { vote: 'NO', at }, 'r'),
      T.decideCommit.write(at),
      T.decideAbort.write('r', at),
      T.decideAbort.write('r', at, 5),
      T.recordAck.write('a', { phase: 'COMMIT', at }),
      T.finalize.write({ from: 'COMMITTING', final: 'COMMITTED', expiresAt: 1 }, at),
      T.markInDoubt.write('COMMIT', at),
      T.park.write('COMMIT', 'a'),
      T.release.write('COMMIT', 'a', { operator: 'o', reason: 'r', at }, false),
      T.release.write('ABORT', 'a', { operator: 'o', reason: 'r', at }, true),
      finishIdempotencyKeyWrite('k', 'tx', 1, at).write,
      keepItemWrite('tx#ops', 1).write,
      keepItemWrite('idem#k', 1, 'tx').write,
    ];
    for (const u of updates) expect(toDynamo(u.condition, u.update).ConditionExpression).toMatch(/^attribute_exists\(#pk\) AND /);
  });

  it('decides COMMIT on the record\'s own counts, attribute against attribute, with no number passed in', () => {
    const write = T.decideCommit.write(at);
    const out = toDynamo(write.condition, write.update);
    expect(out.ConditionExpression).toBe('attribute_exists(#pk) AND (#status = :v0 AND #ok = #req)');
    expect(Object.values(out.ExpressionAttributeValues ?? {})).not.toContain(2);
    const abort = toDynamo(T.decideAbort.write('r', at).condition);
    expect(abort.ConditionExpression).toBe('attribute_exists(#pk) AND (#status = :v0 AND #ok < #req)');
    const timeout = toDynamo(T.decideAbort.write('r', at, 12_345).condition);
    expect(timeout.ConditionExpression).toBe('attribute_exists(#pk) AND (#status = :v0 AND #ok < #req AND #prepareDeadlineAt <= :v1)');
    expect(timeout.ExpressionAttributeValues).toEqual({ ':v0': 'PREPARING', ':v1': 12_345 });
  });

  it('counts a YES only from a pending member, before the deadline by the recorder\'s clock, and decides on the counts', () => {
    let r: Doc = { ...record() };
    const deadline = r.prepareDeadlineAt as number;
    const yes = (p: string, nowMs: number) => T.recordYes.write(p, { vote: 'YES', at }, nowMs);
    expect(step(r, yes('stranger', 0))).toBeUndefined();
    expect(step(r, yes('inventory', deadline))).toBeUndefined();
    r = step(r, yes('inventory', deadline - 1))!;
    expect(r).toMatchObject({ ok: 1, req: 2, pending: { payment: true }, votes: { inventory: { vote: 'YES', at } } });
    expect(step(r, yes('inventory', 0))).toBeUndefined();
    // Short of every YES: no COMMIT; an ABORT still may be, but not a timeout abort before the deadline.
    expect(step(r, T.decideCommit.write(at))).toBeUndefined();
    expect(step(r, T.decideAbort.write('r', at, deadline - 1))).toBeUndefined();
    expect(step(r, T.decideAbort.write('r', at, deadline))).toMatchObject({ status: 'ABORTING', decision: 'ABORT' });
    r = step(r, T.recordYes.write('payment', { vote: 'READ_ONLY', at }, 0))!;
    expect(r).toMatchObject({ ok: 2, pending: {} });
    // Every YES in: COMMIT is the only outcome.
    expect(step(r, T.decideAbort.write('r', at))).toBeUndefined();
    expect(step(r, T.decideAbort.write('r', at, deadline + 1))).toBeUndefined();
    expect(step(r, T.recordNo.write('payment', { vote: 'NO', at }, 'r'))).toBeUndefined();
    const committed = step(r, T.decideCommit.write(at));
    expect(committed).toMatchObject({ status: 'COMMITTING', decision: 'COMMIT', decidedAt: at });
    expect(step(committed!, T.decideCommit.write(at))).toBeUndefined();
  });

  it('records a NO and decides ABORT in one write, with the reason clipped', () => {
    const r = step({ ...record() }, T.recordNo.write('payment', { vote: 'NO', reason: 'no funds', at }, `payment voted NO: ${'x'.repeat(500)}`))!;
    expect(r).toMatchObject({ status: 'ABORTING', decision: 'ABORT', ok: 0, votes: { payment: { vote: 'NO', reason: 'no funds' } }, pending: { inventory: true } });
    expect((r.decisionReason as string).length).toBe(120);
    expect(step(r, T.recordYes.write('inventory', { vote: 'YES', at }, 0))).toBeUndefined();
  });

  it('takes an acknowledgement once, from a member, in the decided phase; parks once; finishing leaves the open index', () => {
    let r = step({ ...record() }, T.recordNo.write('payment', { vote: 'NO', at }, 'no'))!;
    expect(step(r, T.recordAck.write('inventory', { phase: 'COMMIT', at }))).toBeUndefined();
    expect(step(r, T.recordAck.write('stranger', { phase: 'ABORT', at }))).toBeUndefined();
    r = step(r, T.park.write('ABORT', 'inventory'))!;
    expect(r).toMatchObject({ og: 'park-inventory', parkedWith: 'inventory' });
    expect(step(r, T.park.write('ABORT', 'payment'))).toBeUndefined();
    r = step(r, T.recordAck.write('inventory', { phase: 'ABORT', at }))!;
    expect(step(r, T.recordAck.write('inventory', { phase: 'ABORT', at }))).toBeUndefined();
    r = step(r, T.finalize.write({ from: 'ABORTING', final: 'ABORTED', expiresAt: 9 }, at))!;
    expect(r).toMatchObject({ status: 'ABORTED', expiresAt: 9, finishedAt: at });
    expect(r).not.toHaveProperty('og');
    expect(step(r, T.park.write('ABORT', 'inventory'))).toBeUndefined();
  });
});

describe("an operator's release", () => {
  const entry = { operator: 'ops-anna', reason: 'payment-v1 retired', at };
  it('records one release per member that has not acknowledged, only while decided and open', () => {
    let r: Doc = step({ ...record() }, T.recordNo.write('payment', { vote: 'NO', at }, 'no'))!;
    expect(step({ ...record() }, T.release.write('ABORT', 'inventory', entry, false))).toBeUndefined(); // PREPARING
    expect(step(r, T.release.write('COMMIT', 'inventory', entry, false))).toBeUndefined(); // another phase
    expect(step(r, T.release.write('ABORT', 'stranger', entry, false))).toBeUndefined();
    expect(step(r, T.release.write('ABORT', 'inventory', entry, true))).toBeUndefined(); // the map is not there yet
    r = step(r, T.release.write('ABORT', 'inventory', entry, false))!;
    expect(r).toMatchObject({ status: 'ABORTING', releases: { inventory: entry } });
    expect(step(r, T.release.write('ABORT', 'inventory', entry, true))).toBeUndefined(); // once
    expect(step(r, T.release.write('ABORT', 'payment', entry, false))).toBeUndefined(); // the map is there now
    expect(step(r, T.release.write('ABORT', 'payment', entry, true))).toMatchObject({ releases: { inventory: entry, payment: entry } });
  });

  it('refuses a release of a member that acknowledged, and after the finish', () => {
    let r: Doc = step({ ...record() }, T.recordNo.write('payment', { vote: 'NO', at }, 'no'))!;
    r = step(r, T.recordAck.write('inventory', { phase: 'ABORT', at }))!;
    expect(step(r, T.release.write('ABORT', 'inventory', entry, false))).toBeUndefined();
    r = step(r, T.finalize.write({ from: 'ABORTING', final: 'ABORTED', expiresAt: 9 }, at))!;
    expect(step(r, T.release.write('ABORT', 'payment', entry, false))).toBeUndefined();
  });
});

describe('items beside the record', () => {
  it("marks an idempotency key finished only for its own transaction and never creates one", () => {
    const { write } = finishIdempotencyKeyWrite('k', 'tx-1', 500, at);
    expect(evaluate(write.condition, undefined)).toBe(false);
    expect(evaluate(write.condition, { pk: 'idem#k', txId: 'tx-2', expiresAt: 100 })).toBe(false);
    expect(apply(write.update, { pk: 'idem#k', txId: 'tx-1', expiresAt: 100 })).toEqual({ pk: 'idem#k', txId: 'tx-1', expiresAt: 500, finishedAt: at });
  });

  it('keeps an item longer, never shorter, never creating it', () => {
    const { write } = keepItemWrite('idem#k', 500, 'tx-1');
    expect(evaluate(write.condition, undefined)).toBe(false);
    expect(evaluate(write.condition, { pk: 'idem#k', txId: 'tx-1', expiresAt: 600 })).toBe(false);
    expect(evaluate(write.condition, { pk: 'idem#k', txId: 'tx-2', expiresAt: 100 })).toBe(false);
    expect(evaluate(write.condition, { pk: 'idem#k', txId: 'tx-1', expiresAt: 100 })).toBe(true);
    expect(evaluate(keepItemWrite('tx-1#ops', 500).write.condition, { pk: 'tx-1#ops', expiresAt: 100 })).toBe(true);
  });
});

describe('supervisor generations', () => {
  it('names generation 0 after the group and later ones <group>-g<n>, within 80 characters', () => {
    expect(supervisorName('g-1700000000-10-3', 0)).toBe('g-1700000000-10-3');
    expect(supervisorName('g-1700000000-10-3', 12)).toBe('g-1700000000-10-3-g12');
    expect(supervisorName(`park-${'a'.repeat(40)}`, 999_999).length).toBeLessThanOrEqual(80);
    expect(() => supervisorName('g', -1)).toThrow(/whole number/);
    expect(() => supervisorName('g', 1.5)).toThrow(/whole number/);
  });

  it('claims generation n + 1 only over generation n (the first over nothing or 0): one claimant per generation', () => {
    const first = claimGroupWrite('g-1-10-0', 0, at);
    expect(first.item).toEqual({ pk: groupPk('g-1-10-0'), group: 'g-1-10-0', gen: 1, execution: 'g-1-10-0-g1', at, expiresAt: Math.floor(Date.parse(at) / 1000) + GROUP_KEPT_DAYS * 86_400 });
    expect(evaluate(first.condition, undefined)).toBe(true);
    expect(evaluate(first.condition, { pk: 'grp#g-1-10-0', gen: 0 })).toBe(true);
    expect(evaluate(first.condition, first.item)).toBe(false);
    const second = claimGroupWrite('g-1-10-0', 1, at);
    expect(evaluate(second.condition, first.item)).toBe(true);
    expect(evaluate(second.condition, second.item)).toBe(false);
    expect(evaluate(second.condition, undefined)).toBe(false);
  });
});

describe('assertTransition', () => {
  it('accepts a state change from where it may start, to what it may produce', () => {
    expect(() => assertTransition('decideCommit', 'PREPARING', { status: 'COMMITTING' })).not.toThrow();
    expect(() => assertTransition('recordYes', undefined, { status: 'PREPARING' })).not.toThrow();
    expect(() => assertTransition('recordNo', 'PREPARING', { status: 'ABORTING' })).not.toThrow();
    expect(() => assertTransition('park', 'ABORTING', { status: 'ABORTING' })).not.toThrow();
    expect(() => assertTransition('create', null, { status: 'PREPARING' })).not.toThrow();
  });

  it('throws before a write that cannot start there, and after one that produced the wrong record', () => {
    const cases: [TransitionName, string][] = [
      ['recordYes', 'COMMITTING'],
      ['decideAbort', 'ABORTING'],
      ['recordAck', 'PREPARING'],
      ['park', 'COMMITTED'],
    ];
    for (const [name, from] of cases) expect(() => assertTransition(name, from as never)).toThrow(new TransitionError(`log transition ${name} cannot start from ${from}`));
    expect(() => assertTransition('finalize', 'COMMITTING', { status: 'ABORTED' })).toThrow('log transition finalize from COMMITTING produced ABORTED; it may produce COMMITTED');
    expect(() => assertTransition('decideCommit', 'PREPARING', { status: 'ABORTING' })).toThrow('it may produce COMMITTING');
    expect(() => assertTransition('decideAbort', 'PREPARING', undefined)).toThrow('applied but returned no record');
    expect(() => LOG_TRANSITIONS.finalize.write({ from: 'ABORTING', final: 'COMMITTED', expiresAt: 1 }, 't')).toThrow('ABORTING -> COMMITTED');
  });
});
