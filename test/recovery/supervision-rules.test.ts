// The pure supervision rules (src/core/recovery.ts): what a group's supervisor does with each open
// member (memberAction), the phase-two re-send schedule (resendPoints), what a participant in doubt
// concludes from the log (decisionOf), backoff, and the participant's own in-doubt watch.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PARK_AFTER_MS, RESEND_CAP_MS, backoffMs, decisionOf, memberAction, resendPoints } from '../../src/core/recovery';
import { DEFAULT_SUPERVISION, IN_DOUBT_AFTER_COMMIT_TIMEOUTS, TX_STATUSES, newTransaction, type TxRecord } from '../../src/core/transaction';
import { InDoubtWatch } from '../../src/participant/inquiry';

const T0 = Date.UTC(2026, 10, 27, 12);
const C = 2_000; // the commit timeout of these records

function record(overrides: Partial<TxRecord> = {}): TxRecord {
  const r = newTransaction({
    txId: 'tx-00000001',
    request: { participants: [{ service: 'inventory', operation: {} }, { service: 'payment', operation: {} }], timeouts: { prepareSeconds: 10, commitSeconds: C / 1000 } },
    nowMs: T0,
    requestHash: 'h',
    supervision: DEFAULT_SUPERVISION,
  });
  return { ...r, ...overrides };
}

const yes = { vote: 'YES' as const, at: 'v' };
/** Decided COMMIT at `decidedMs`, both YES, inventory acknowledged: payment owes its ACK. */
const committing = (decidedMs: number, overrides: Partial<TxRecord> = {}): TxRecord =>
  record({
    status: 'COMMITTING',
    decision: 'COMMIT',
    decidedAt: new Date(decidedMs).toISOString(),
    pending: {},
    votes: { inventory: yes, payment: yes },
    ok: 2,
    acks: { inventory: { phase: 'COMMIT', at: 'a' } },
    ...overrides,
  });

describe('resendPoints: phase two is re-sent at decided + c, + 3c, + 7c ..., the step capped at 60 s', () => {
  /** The send times after the decision's own send, up to `toMs`. */
  const points = (decidedMs: number, commitMs: number, toMs: number): number[] => {
    const out: number[] = [];
    let from = decidedMs;
    for (;;) {
      const { next } = resendPoints(decidedMs, commitMs, from, from);
      if (next > toMs) return out;
      out.push(next);
      from = next;
    }
  };

  it('doubles the step from the commit timeout, then holds it at RESEND_CAP_MS', () => {
    expect(points(T0, 1_000, T0 + 200_000).map((t) => t - T0)).toEqual([1_000, 3_000, 7_000, 15_000, 31_000, 63_000, 123_000, 183_000]);
    expect(points(T0, 30_000, T0 + 300_000).map((t) => t - T0)).toEqual([30_000, 90_000, 150_000, 210_000, 270_000]);
    // A commit timeout longer than the cap: the first re-send after c, then every 60 s.
    expect(points(T0, 100_000, T0 + 300_000).map((t) => t - T0)).toEqual([100_000, 160_000, 220_000, 280_000]);
    expect(RESEND_CAP_MS).toBe(60_000);
  });

  it('is due when a point fell in (from, to], and counts the decision\'s own send', () => {
    expect(resendPoints(T0, 1_000, T0, T0)).toEqual({ due: false, next: T0 + 1_000, sends: 1 });
    expect(resendPoints(T0, 1_000, T0, T0 + 999)).toEqual({ due: false, next: T0 + 1_000, sends: 1 });
    expect(resendPoints(T0, 1_000, T0, T0 + 1_000)).toEqual({ due: true, next: T0 + 3_000, sends: 2 });
    expect(resendPoints(T0, 1_000, T0 + 1_000, T0 + 2_999)).toEqual({ due: false, next: T0 + 3_000, sends: 2 });
    // A run that slept through several points sends once.
    expect(resendPoints(T0, 1_000, T0 + 500, T0 + 16_000)).toEqual({ due: true, next: T0 + 31_000, sends: 5 });
    // A first run (no previous run) sends if any point has passed.
    expect(resendPoints(T0, 1_000, Number.NEGATIVE_INFINITY, T0 + 1_500).due).toBe(true);
  });

  it('property: never gives up: after any time there is a next point, at most max(c, 60 s) away, and it is due then', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3_600 }), fc.integer({ min: 0, max: 30 * 86_400_000 }), (commitSeconds, elapsed) => {
        const commitMs = commitSeconds * 1000;
        const now = T0 + elapsed;
        const { next, sends } = resendPoints(T0, commitMs, now, now);
        expect(next).toBeGreaterThan(now);
        expect(next - now).toBeLessThanOrEqual(Math.max(commitMs, RESEND_CAP_MS));
        expect(resendPoints(T0, commitMs, next - 1, next)).toMatchObject({ due: true, sends: sends + 1 });
      }),
      { numRuns: 300, seed: 11 },
    );
  });
});

describe('memberAction', () => {
  it('leaves finished transactions alone', () => {
    expect(memberAction(record({ status: 'COMMITTED' }), T0, undefined, false)).toEqual({ kind: 'none', why: 'already COMMITTED' });
    expect(memberAction(record({ status: 'ABORTED' }), T0, undefined, false).kind).toBe('none');
  });

  it('waits for an undecided transaction until its deadline, and aborts it at, not before, the deadline', () => {
    const r = record();
    expect(memberAction(r, T0, undefined, false)).toEqual({ kind: 'wait', until: r.prepareDeadlineAt });
    expect(memberAction(r, r.prepareDeadlineAt - 1, T0, false)).toEqual({ kind: 'wait', until: r.prepareDeadlineAt });
    expect(memberAction(r, r.prepareDeadlineAt, T0, false)).toEqual({ kind: 'abort', reason: 'prepare deadline passed' });
    expect(memberAction({ ...r, ok: 1, votes: { inventory: yes } }, r.prepareDeadlineAt + 60_000, T0, false).kind).toBe('abort');
  });

  it('commits a transaction whose every YES is recorded but undecided (its decider crashed), even past its deadline', () => {
    const r = record({ ok: 2, pending: {}, votes: { inventory: yes, payment: { vote: 'READ_ONLY', at: 'v' } } });
    expect(memberAction(r, T0, undefined, false)).toEqual({ kind: 'commit' });
    expect(memberAction(r, r.prepareDeadlineAt + 1, undefined, false)).toEqual({ kind: 'commit' });
  });

  it('finishes a decided transaction that nobody owes an acknowledgement', () => {
    expect(memberAction(committing(T0, { acks: { inventory: { phase: 'COMMIT', at: 'a' }, payment: { phase: 'COMMIT', at: 'b' } } }), T0, undefined, false)).toEqual({ kind: 'finish' });
    // NO voters hold nothing: an ABORT that only they got needs no acknowledgement.
    const aborted = record({ status: 'ABORTING', decision: 'ABORT', decidedAt: new Date(T0).toISOString(), votes: { inventory: { vote: 'NO', at: 'v' }, payment: { vote: 'NO', at: 'v' } } });
    expect(memberAction(aborted, T0, undefined, false)).toEqual({ kind: 'finish' });
    // A READ_ONLY voter keeps its locks until the decision reaches it (docs/consistency.md): it is owed the outcome.
    const readOnly = record({ status: 'ABORTING', decision: 'ABORT', decidedAt: new Date(T0).toISOString(), votes: { inventory: { vote: 'NO', at: 'v' }, payment: { vote: 'READ_ONLY', at: 'v' } } });
    expect(memberAction(readOnly, T0, undefined, false)).toMatchObject({ kind: 'phase-two', to: ['payment'] });
  });

  it('re-sends phase two to the unacknowledged on the schedule, with the attempt number, and looks again at the next point', () => {
    const r = committing(T0);
    expect(memberAction(r, T0 + 1, T0, false)).toEqual({ kind: 'phase-two', to: ['payment'], resend: false, attempt: 1, markInDoubt: false, next: T0 + C });
    expect(memberAction(r, T0 + C, T0 + 1, false)).toEqual({ kind: 'phase-two', to: ['payment'], resend: true, attempt: 2, markInDoubt: false, next: T0 + 3 * C });
    expect(memberAction(r, T0 + C + 5, T0 + C, false)).toMatchObject({ resend: false, attempt: 2 });
    // ABORT goes to everyone who may have prepared: a member whose vote was never recorded too.
    const aborting = record({ status: 'ABORTING', decision: 'ABORT', decidedAt: new Date(T0).toISOString(), votes: { inventory: yes } });
    expect(memberAction(aborting, T0 + C, T0, false)).toMatchObject({ kind: 'phase-two', to: ['inventory', 'payment'], resend: true });
  });

  it(`marks the unacknowledged in doubt after ${IN_DOUBT_AFTER_COMMIT_TIMEOUTS} commit timeouts, once`, () => {
    const r = committing(T0);
    const at = T0 + IN_DOUBT_AFTER_COMMIT_TIMEOUTS * C;
    expect(memberAction(r, at - 1, T0, false)).toMatchObject({ markInDoubt: false });
    expect(memberAction(r, at, at - 1, false)).toMatchObject({ kind: 'phase-two', to: ['payment'], markInDoubt: true });
    expect(memberAction({ ...r, inDoubtSince: 'x' }, at + 10 * C, at, false)).toMatchObject({ markInDoubt: false });
  });

  it('parks a transaction that waited 10 minutes with the supervisor of the participant it waits on, once, and never from a parking group', () => {
    const r = committing(T0);
    expect(memberAction(r, T0 + PARK_AFTER_MS - 1, T0, false)).not.toHaveProperty('park');
    expect(memberAction(r, T0 + PARK_AFTER_MS, T0, false)).toMatchObject({ kind: 'phase-two', park: 'payment' });
    expect(memberAction(r, T0 + PARK_AFTER_MS, T0, true)).not.toHaveProperty('park');
    expect(memberAction({ ...r, parkedWith: 'payment' }, T0 + 2 * PARK_AFTER_MS, T0, false)).not.toHaveProperty('park');
    // Parked or not, it goes on being re-sent: supervision never gives up.
    expect(memberAction({ ...r, parkedWith: 'payment' }, T0 + 2 * PARK_AFTER_MS, undefined, true)).toMatchObject({ resend: true });
  });
});

describe('decisionOf (what a participant in doubt concludes)', () => {
  it('is presumed abort without a record, pending while preparing', () => {
    expect(decisionOf(undefined)).toBe('ABORT');
    expect(TX_STATUSES.map((status) => decisionOf({ status }))).toEqual(['PENDING', 'COMMIT', 'ABORT', 'COMMIT', 'ABORT']);
  });
});

describe('backoff', () => {
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
