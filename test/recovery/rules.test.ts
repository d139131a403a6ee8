// The pure recovery rules (src/core/recovery.ts), the in-doubt watch, and the in-doubt view.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffMs, decisionOf, isStale, recoveryAction, recoveryExecutionName, resumeInput, type ExecutionState } from '../../src/core/recovery';
import { IN_DOUBT_AFTER_ATTEMPTS, TX_STATUSES, inDoubt, newTransaction, toView, type TxRecord } from '../../src/core/transaction';
import { InDoubtWatch } from '../../src/participant/inquiry';

function record(overrides: Partial<TxRecord> = {}): TxRecord {
  const r = newTransaction({
    txId: 'tx-00000001',
    request: { participants: [{ service: 'inventory', operation: {} }, { service: 'payment', operation: {} }], timeouts: { prepareSeconds: 10, commitSeconds: 30 } },
    nowMs: 1_000_000,
    requestHash: 'h',
  });
  return { ...r, ...overrides };
}

const STATES: ExecutionState[] = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED', 'MISSING'];

describe('recoveryAction', () => {
  it('leaves finished records and live executions alone', () => {
    for (const state of STATES) {
      expect(recoveryAction({ ...record({ status: 'COMMITTED' }), openPk: undefined }, state, 2_000_000).kind).toBe('none');
    }
    for (const status of ['PREPARING', 'COMMITTING', 'ABORTING'] as const) {
      expect(recoveryAction(record({ status }), 'RUNNING', 9_999_999)).toEqual({ kind: 'none', why: 'its execution is running' });
    }
  });

  it('resumes a dead execution from the recorded phase', () => {
    for (const state of STATES.filter((s) => s !== 'RUNNING')) {
      expect(recoveryAction(record({ status: 'COMMITTING' }), state, 2_000_000)).toEqual({ kind: 'resume', from: 'COMMIT' });
      expect(recoveryAction(record({ status: 'ABORTING' }), state, 2_000_000)).toEqual({ kind: 'resume', from: 'ABORT' });
      // Inside the prepare deadline: prepare goes on.
      expect(recoveryAction(record(), state, 1_005_000)).toEqual({ kind: 'resume', from: 'PREPARE' });
    }
  });

  it('aborts PREPARING past its deadline first', () => {
    expect(recoveryAction(record(), 'MISSING', 1_010_000)).toEqual({ kind: 'abort', reason: 'recovery: execution missing and the prepare deadline passed' });
  });
});

describe('resumeInput', () => {
  it('gives a resumed Prepare only what is left of the deadline, at least a second', () => {
    const r = record();
    expect(resumeInput(r, 'PREPARE', 1_003_500)).toEqual({ txId: r.txId, timeouts: { prepareSeconds: 7, commitSeconds: 30 }, resumeFrom: 'PREPARE' });
    expect(resumeInput(r, 'PREPARE', 1_020_000).timeouts.prepareSeconds).toBe(1);
    expect(resumeInput(r, 'COMMIT', 1_020_000)).toEqual({ txId: r.txId, timeouts: { prepareSeconds: 10, commitSeconds: 30 }, resumeFrom: 'COMMIT' });
  });

  it('names recovery executions within the 80-character limit', () => {
    expect(recoveryExecutionName('a'.repeat(64), 12345)).toHaveLength(64 + 7);
    expect(() => recoveryExecutionName('tx-00000001', 0)).toThrow(/positive integer/);
  });
});

describe('staleness and backoff', () => {
  it('is stale once updatedAt is staleMs old', () => {
    const r = record();
    expect(isStale(r, 1_029_999, 30_000)).toBe(false);
    expect(isStale(r, 1_030_000, 30_000)).toBe(true);
  });

  it('backs off within [0, min(cap, base * 2^attempt))', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 }), fc.double({ min: 0, max: 0.999999, noNaN: true }), (attempt, random) => {
        const ms = backoffMs(attempt, 1_000, 60_000, random);
        expect(ms).toBeGreaterThanOrEqual(0);
        expect(ms).toBeLessThan(Math.min(60_000, 1_000 * 2 ** attempt));
      }),
    );
  });
});

describe('decisionOf (what a participant in doubt concludes)', () => {
  it('is presumed abort without a record, pending while preparing', () => {
    expect(decisionOf(undefined)).toBe('ABORT');
    expect(TX_STATUSES.map((status) => decisionOf({ status }))).toEqual(['PENDING', 'COMMIT', 'ABORT', 'COMMIT', 'ABORT']);
  });
});

describe('the in-doubt view', () => {
  it('names un-acknowledged YES voters once phase two was sent IN_DOUBT_AFTER_ATTEMPTS times', () => {
    const r = record({
      status: 'COMMITTING',
      votes: { inventory: { vote: 'YES', at: 'a' }, payment: { vote: 'YES', at: 'b' } },
      acks: { inventory: { phase: 'COMMIT', at: 'c' } },
      commitAttempts: IN_DOUBT_AFTER_ATTEMPTS - 1,
    });
    expect(inDoubt(r)).toEqual([]);
    expect(toView(r).inDoubt).toBeUndefined();
    r.commitAttempts = IN_DOUBT_AFTER_ATTEMPTS;
    expect(toView(r).inDoubt).toEqual(['payment']);
    expect(inDoubt({ ...r, status: 'COMMITTED' })).toEqual([]);
  });
});

describe('InDoubtWatch', () => {
  it('watches YES votes, forgets on ACK or NO, and backs off unanswered questions', () => {
    const watch = new InDoubtWatch(5_000, 60_000);
    const prepare = { type: 'PREPARE' as const, txId: 'tx-a', deadlineAt: 10_000 };
    watch.note(prepare, { kind: 'vote', vote: 'YES' }, 1_000);
    watch.note({ ...prepare, txId: 'tx-b' }, { kind: 'vote', vote: 'NO' }, 1_000);
    watch.note({ ...prepare, txId: 'tx-c' }, { kind: 'vote', vote: 'YES' }, 1_000);
    expect(watch.size).toBe(2);
    expect(watch.due(14_999, 10)).toEqual([]);
    expect(watch.due(15_000, 10)).toEqual(['tx-a', 'tx-c']);
    watch.postpone('tx-a', 15_000, 0.5);
    expect(watch.due(15_000, 10)).toEqual(['tx-c']);
    watch.note({ type: 'COMMIT', txId: 'tx-c', deadlineAt: 0 }, { kind: 'ack', phase: 'COMMIT' }, 15_000);
    expect(watch.size).toBe(1);
    expect(watch.due(15_000 + 1_000 + 60_000, 10)).toEqual(['tx-a']);
  });
});
