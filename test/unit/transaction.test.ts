import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Vote } from '../../src/core/messages';
import {
  awaitingAck,
  awaitingVote,
  newTransaction,
  signalAfterAck,
  signalAfterVote,
  tally,
  toView,
  validateStartRequest,
  type TxRecord,
} from '../../src/core/transaction';

const services = ['inventory', 'payment', 'shipping', 'order'];

function tx(n: number): TxRecord {
  const request = { participants: services.slice(0, n).map((service) => ({ service, operation: {} })), timeouts: { prepareSeconds: 10, commitSeconds: 30 } };
  return newTransaction({ txId: 'tx-00000001', request, nowMs: 0, requestHash: 'h' });
}

/** Apply a vote the way the log does: once per participant, only while PREPARING. */
function applyVote(record: TxRecord, p: string, vote: Vote): boolean {
  if (record.status !== 'PREPARING' || record.votes[p]) return false;
  record.votes[p] = { vote, at: 't' };
  return true;
}

describe('validateStartRequest', () => {
  it('accepts a valid body and fills in default timeouts', () => {
    const r = validateStartRequest({ participants: [{ service: 'inventory', operation: { items: [] } }] }, services);
    expect(r).toEqual({ ok: true, value: { participants: [{ service: 'inventory', operation: { items: [] } }], timeouts: { prepareSeconds: 10, commitSeconds: 30 } } });
  });

  it('uses the deployment defaults for omitted timeouts', () => {
    const r = validateStartRequest({ participants: [{ service: 'order' }], timeouts: { commitSeconds: 5 } }, services, { prepareSeconds: 3, commitSeconds: 60 });
    expect(r.ok && r.value.timeouts).toEqual({ prepareSeconds: 3, commitSeconds: 5 });
  });

  it.each([
    [{}, 'participants'],
    [{ participants: [] }, 'participants'],
    [{ participants: [{ service: 'Bad Name' }] }, 'participants.0.service'],
    [{ participants: [{ service: 'order' }], timeouts: { prepareSeconds: 0 } }, 'timeouts.prepareSeconds'],
    [{ participants: [{ service: 'order' }], timeouts: { prepareSeconds: -5 } }, 'timeouts.prepareSeconds'],
    [{ participants: [{ service: 'order' }], timeouts: { commitSeconds: 1e9 } }, 'timeouts.commitSeconds'],
    [{ participants: [{ service: 'order' }], timeouts: { prepareSeconds: 1.5 } }, 'timeouts.prepareSeconds'],
    [{ participants: [{ service: 'order' }], timeouts: { prepareSeconds: '10' } }, 'timeouts.prepareSeconds'],
    [{ participants: [{ service: 'order' }], extra: 1 }, '(body)'],
    [[1, 2], '(body)'],
  ])('rejects %j naming %s', (body, field) => {
    const r = validateStartRequest(body, services);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.map((e) => e.field)).toContain(field);
  });

  it('names an unknown service and a service named twice', () => {
    const r = validateStartRequest({ participants: [{ service: 'order' }, { service: 'ghost' }, { service: 'order' }] }, services);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.errors).toContainEqual({ field: 'participants.1.service', message: expect.stringContaining("unknown service 'ghost'") });
      expect(r.errors).toContainEqual({ field: 'participants.2.service', message: expect.stringContaining('named twice') });
    }
  });

  it('names every bad field in one answer: an unknown service beside a bad timeout and a malformed name', () => {
    const r = validateStartRequest({ participants: [{ service: 'ghost' }, { service: 'Bad Name!' }], timeouts: { prepareSeconds: 0 } }, services);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.errors.map((e) => e.field).sort()).toEqual(['participants.0.service', 'participants.1.service', 'timeouts.prepareSeconds']);
      expect(r.errors).toContainEqual({ field: 'participants.0.service', message: expect.stringContaining("unknown service 'ghost'") });
    }
  });
});

describe('vote tally', () => {
  it('commits only when every participant voted YES or READ_ONLY', () => {
    const r = tx(3);
    applyVote(r, 'inventory', 'YES');
    applyVote(r, 'payment', 'READ_ONLY');
    expect(tally(r)).toBeUndefined();
    applyVote(r, 'shipping', 'YES');
    expect(tally(r)?.outcome).toBe('COMMIT');
  });

  it('aborts on the first NO with its reason', () => {
    const r = tx(3);
    r.votes.payment = { vote: 'NO', reason: 'insufficient funds', at: 't' };
    expect(tally(r)).toEqual({ outcome: 'ABORT', status: 'ABORTING', reason: 'payment voted NO: insufficient funds' });
  });

  const voteArb = fc.constantFrom<Vote>('YES', 'NO', 'READ_ONLY');
  const scenario = fc.integer({ min: 1, max: 4 }).chain((n) =>
    fc.record({
      n: fc.constant(n),
      votes: fc.array(voteArb, { minLength: n, maxLength: n }),
      // Delivery order with duplicates: indexes into the participants, each at least once.
      order: fc.array(fc.integer({ min: 0, max: n - 1 }), { maxLength: 12 }).chain((extra) =>
        fc.shuffledSubarray([...Array.from({ length: n }, (_, i) => i), ...extra], { minLength: n + extra.length, maxLength: n + extra.length }),
      ),
    }),
  );

  it('property: whatever the delivery order and duplicates, exactly one vote write wakes the execution, with the right outcome', () => {
    fc.assert(
      fc.property(scenario, ({ n, votes, order }) => {
        const r = tx(n);
        const signals = [];
        for (const i of order) {
          const p = services[i]!;
          if (applyVote(r, p, votes[i]!)) {
            const s = signalAfterVote(r, p);
            if (s) signals.push(s);
          }
        }
        expect(signals).toHaveLength(1);
        const expected = votes.includes('NO') ? 'ABORT' : 'COMMIT';
        expect(signals[0]!.outcome).toBe(expected);
        expect(awaitingVote(r)).toHaveLength(0);
      }),
    );
  });
});

describe('phase two', () => {
  it('waits for YES voters on COMMIT, and on ABORT also for those whose vote was never recorded', () => {
    const r = tx(4);
    r.votes = { inventory: { vote: 'YES', at: 't' }, payment: { vote: 'READ_ONLY', at: 't' }, shipping: { vote: 'NO', at: 't' } };
    expect(awaitingAck(r)).toEqual(['inventory']);
    // On ABORT, a participant whose vote was never recorded may have prepared all the same: it is
    // sent ABORT until it acknowledges.
    r.decision = 'ABORT';
    expect(awaitingAck(r)).toEqual(['inventory', 'order']);
  });

  it('property: exactly one ack write completes the phase, with a TTL after retention', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.array(fc.nat(3), { maxLength: 10 }), fc.boolean(), (n, extra, commit) => {
        const r = tx(n);
        for (const s of services.slice(0, n)) r.votes[s] = { vote: 'YES', at: 't' };
        r.status = commit ? 'COMMITTING' : 'ABORTING';
        const order = [...services.slice(0, n), ...extra.filter((i) => i < n).map((i) => services[i]!)].reverse();
        let signals = 0;
        for (const p of order) {
          if (r.acks[p]) continue;
          r.acks[p] = { phase: commit ? 'COMMIT' : 'ABORT', at: 't' };
          const s = signalAfterAck(r, 1_000_000, 30);
          if (s) {
            signals++;
            expect(s).toEqual({ from: r.status, final: commit ? 'COMMITTED' : 'ABORTED', expiresAt: 1000 + 30 * 86_400 });
          }
        }
        expect(signals).toBe(1);
      }),
    );
  });
});

describe('toView', () => {
  it('shows each participant with its vote and acknowledgement', () => {
    const r = tx(2);
    r.status = 'COMMITTED';
    r.decision = 'COMMIT';
    r.decisionReason = 'every participant voted YES';
    r.votes = { inventory: { vote: 'YES', at: 'a' }, payment: { vote: 'YES', at: 'b' } };
    r.acks = { inventory: { phase: 'COMMIT', at: 'c' } };
    const v = toView(r);
    expect(v.decision).toEqual({ outcome: 'COMMIT', reason: 'every participant voted YES', at: undefined });
    expect(v.participants).toEqual([
      { service: 'inventory', vote: 'YES', votedAt: 'a', ack: 'COMMIT', ackedAt: 'c' },
      { service: 'payment', vote: 'YES', votedAt: 'b' },
    ]);
  });
});
