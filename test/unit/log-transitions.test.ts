// The log's table of state changes and its DSL: both interpreters, and the status graph's assertions.
import { describe, expect, it } from 'vitest';
import { add, and, apply, eq, evaluate, exists, le, notExists, or, remove, set, toDynamo } from '../../src/core/log-dsl';
import { LOG_TRANSITIONS, STATUS_GRAPH, assertTransition } from '../../src/core/log-transitions';
import { PHASE_STATUS, STATUS_PHASE } from '../../src/core/transaction';

describe('toDynamo', () => {
  it('aliases every path segment, a key that is no identifier by number, and names each distinct value once', () => {
    const out = toDynamo(and(eq('status', 'PREPARING'), or(notExists(['votes', 'pay-ment']), le('updatedAt', 'PREPARING'))), [
      set(['votes', 'pay-ment'], { vote: 'YES' }),
      add('prepareAttempts', 1),
      remove('taskToken'),
    ]);
    expect(out).toEqual({
      ConditionExpression: '#status = :v0 AND (attribute_not_exists(#votes.#x0) OR #updatedAt <= :v0)',
      UpdateExpression: 'SET #votes.#x0 = :v1 REMOVE #taskToken ADD #prepareAttempts :v2',
      ExpressionAttributeNames: { '#status': 'status', '#votes': 'votes', '#x0': 'pay-ment', '#updatedAt': 'updatedAt', '#taskToken': 'taskToken', '#prepareAttempts': 'prepareAttempts' },
      ExpressionAttributeValues: { ':v0': 'PREPARING', ':v1': { vote: 'YES' }, ':v2': 1 },
    });
  });

  it('leaves out the values of a condition that has none', () => {
    expect(toDynamo(notExists('pk'))).toEqual({ ConditionExpression: 'attribute_not_exists(#pk)', ExpressionAttributeNames: { '#pk': 'pk' } });
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

  it('applies to a copy: ADD from nothing, REMOVE, SET into an existing map only', () => {
    const next = apply([add('count', 1), remove('n'), set(['votes', 'b'], { vote: 'NO', reason: undefined })], item);
    expect(next).toEqual({ pk: 't', status: 'PREPARING', votes: { a: { vote: 'YES' }, b: { vote: 'NO' } }, count: 1 });
    expect(item.n).toBe(2);
    expect(() => apply([set(['acks', 'a'], 1)], item)).toThrow(/parent is not a map/);
  });
});

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
  });

  it('guards every update with the record existing', () => {
    const t = LOG_TRANSITIONS;
    const updates = [
      t.recordVote.write('a', { vote: 'YES', at: 't' }),
      t.recordAck.write('a', { phase: 'COMMIT', at: 't' }),
      t.storeTaskToken.write('PREPARE', 'token', 't'),
      t.decide.write({ status: 'COMMITTING', outcome: 'COMMIT', reason: 'r', at: 't' }),
      t.decideAbort.write('r', 't'),
      t.finalize.write({ from: 'COMMITTING', final: 'COMMITTED', expiresAt: 1 }, 't'),
      t.markInDoubt.write('COMMIT', { a: 't' }),
      t.claimRecovery.write('tx', { executionName: 'tx', recoveries: 0 }, { executionName: 'tx-r1', at: 't' }),
    ];
    for (const u of updates) expect(toDynamo(u.condition, u.update).ConditionExpression).toMatch(/^attribute_exists\(#pk\) AND /);
  });
});

describe('assertTransition', () => {
  it('accepts a state change from where it may start, to what it may produce', () => {
    expect(() => assertTransition('decide', 'PREPARING', { status: 'COMMITTING' })).not.toThrow();
    expect(() => assertTransition('claimRecovery', undefined, { status: 'ABORTING' })).not.toThrow();
    expect(() => assertTransition('create', null, { status: 'PREPARING' })).not.toThrow();
  });

  it('throws before a write that cannot start there, and after one that produced the wrong record', () => {
    expect(() => assertTransition('recordVote', 'COMMITTING')).toThrow('log transition recordVote cannot start from COMMITTING');
    expect(() => assertTransition('finalize', 'COMMITTING', { status: 'ABORTED' })).toThrow('log transition finalize from COMMITTING produced ABORTED; it may produce COMMITTED');
    expect(() => assertTransition('decideAbort', 'PREPARING', undefined)).toThrow('applied but returned no record');
    expect(() => LOG_TRANSITIONS.finalize.write({ from: 'ABORTING', final: 'COMMITTED', expiresAt: 1 }, 't')).toThrow('ABORTING -> COMMITTED');
  });
});
