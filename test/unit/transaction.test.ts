import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apply, evaluate, type Condition, type Update } from '../../src/core/log-dsl';
import { LOG_TRANSITIONS } from '../../src/core/log-transitions';
import type { Vote } from '../../src/core/messages';
import {
  DEFAULT_SUPERVISION,
  LIST_SHARDS,
  OPS_EXTRA_DAYS,
  RECORDED_REASON_CHARS,
  awaitingAck,
  awaitingVote,
  groupInfo,
  inDoubt,
  listShard,
  newOps,
  newTransaction,
  opsPk,
  parkingGroup,
  phaseTwoResult,
  readyToFinish,
  recordedReason,
  shardOf,
  supervisionGroup,
  idSlot,
  tally,
  toView,
  validateStartRequest,
  type TxRecord,
} from '../../src/core/transaction';

const services = ['inventory', 'payment', 'shipping', 'order'];

function tx(n: number, nowMs = 0): TxRecord {
  const request = { participants: services.slice(0, n).map((service) => ({ service, operation: {} })), timeouts: { prepareSeconds: 10, commitSeconds: 30 } };
  return newTransaction({ txId: 'tx-00000001', request, nowMs, requestHash: 'h', supervision: DEFAULT_SUPERVISION });
}

/** One write of the table on a plain record, as the memory adapter does it; undefined when its condition fails. */
function write(record: TxRecord, w: { condition: Condition; update: readonly Update[] }): TxRecord | undefined {
  return evaluate(w.condition, record as unknown as Record<string, unknown>) ? (apply(w.update, record as unknown as Record<string, unknown>) as unknown as TxRecord) : undefined;
}

/** Apply a vote the way the log does: once per pending member, only while PREPARING. */
function applyVote(record: TxRecord, p: string, vote: Vote): TxRecord | undefined {
  const entry = { vote, at: 't' };
  return write(record, vote === 'NO' ? LOG_TRANSITIONS.recordNo.write(p, entry, `${p} voted NO`) : LOG_TRANSITIONS.recordYes.write(p, entry, 0));
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

describe('a new transaction', () => {
  it('starts PREPARING with every member pending, req members and no YES, keyed for listing and supervision', () => {
    const r = tx(3, Date.UTC(2026, 0, 1, 0, 0, 7));
    expect(r).toMatchObject({
      pk: 'tx-00000001',
      status: 'PREPARING',
      services: ['inventory', 'payment', 'shipping'],
      pending: { inventory: true, payment: true, shipping: true },
      votes: {},
      acks: {},
      req: 3,
      ok: 0,
      createdAt: '2026-01-01T00:00:07.000Z',
      prepareDeadlineAt: Date.UTC(2026, 0, 1, 0, 0, 17),
      lp: listShard(idSlot('tx-00000001')),
      og: supervisionGroup(idSlot('tx-00000001'), Date.UTC(2026, 0, 1, 0, 0, 7), DEFAULT_SUPERVISION),
    });
    expect(r).not.toHaveProperty('resources');
    expect(r).not.toHaveProperty('idempotencyKey');
    // No operations in the record: they live in an item of their own, written once.
    expect(JSON.stringify(r)).not.toContain('operation');
  });

  it('keeps the operations as JSON text in their own item, with a TTL past the retention', () => {
    const request = { participants: [{ service: 'payment', operation: { amount: 1e308, nested: [1, { a: null }] } }], timeouts: { prepareSeconds: 10, commitSeconds: 30 } };
    const ops = newOps('tx-00000001', request, 86_400_000, 30);
    expect(ops).toEqual({ pk: opsPk('tx-00000001'), participants: JSON.stringify(request.participants), expiresAt: 86_400 + (30 + OPS_EXTRA_DAYS) * 86_400 });
    expect(ops.pk).toBe('tx-00000001#ops');
    expect(JSON.parse(ops.participants)).toEqual(request.participants);
  });

  it('clips recorded reasons to RECORDED_REASON_CHARS, marking the cut', () => {
    expect(recordedReason('short')).toBe('short');
    expect(recordedReason('x'.repeat(RECORDED_REASON_CHARS))).toBe('x'.repeat(RECORDED_REASON_CHARS));
    const cut = recordedReason('y'.repeat(1000));
    expect(cut).toHaveLength(RECORDED_REASON_CHARS);
    expect(cut.endsWith('…')).toBe(true);
  });
});

describe('sharding', () => {
  it('spreads ids over shards stably and roughly evenly', () => {
    const ids = Array.from({ length: 8000 }, (_, i) => `tx-${i.toString(16).padStart(8, '0')}-${(i * 7919).toString(36)}`);
    const counts = new Array<number>(LIST_SHARDS).fill(0);
    for (const id of ids) counts[shardOf(id, LIST_SHARDS)]!++;
    for (const c of counts) expect(c).toBeGreaterThan((0.8 * ids.length) / LIST_SHARDS);
    expect(shardOf(ids[0]!, LIST_SHARDS)).toBe(shardOf(ids[0]!, LIST_SHARDS));
    expect(new Set(ids.map((id) => listShard(idSlot(id))))).toEqual(new Set(Array.from({ length: LIST_SHARDS }, (_, i) => `l${i}`)));
  });

  it('puts a transaction in the group of its creation bucket and id shard, which closes at the bucket end', () => {
    const s = { shards: 4, bucketSeconds: 10 };
    const created = Date.UTC(2026, 0, 1, 0, 0, 19, 999);
    const group = supervisionGroup(idSlot('tx-00000001'), created, s);
    const bucket = Date.UTC(2026, 0, 1, 0, 0, 10) / 1000;
    expect(group).toBe(`g-${bucket}-10-${shardOf('tx-00000001', 4)}`);
    expect(groupInfo(group)).toEqual({ kind: 'bucket', closesAt: (bucket + 10) * 1000 });
    expect(supervisionGroup(idSlot('tx-00000001'), created + 1, s)).not.toBe(group);
    // A slot goes to the shard it names, modulo each count.
    expect(supervisionGroup(13, created, s)).toBe(`g-${bucket}-10-1`);
    expect(listShard(LIST_SHARDS + 5)).toBe('l5');
    expect(groupInfo(parkingGroup('payment'))).toEqual({ kind: 'park', service: 'payment' });
    expect(() => groupInfo('tx-00000001')).toThrow(/not a supervision group/);
  });
});

describe('vote tally', () => {
  it('commits only when every participant voted YES or READ_ONLY', () => {
    let r = tx(3);
    r = applyVote(r, 'inventory', 'YES')!;
    r = applyVote(r, 'payment', 'READ_ONLY')!;
    expect(tally(r)).toBeUndefined();
    r = applyVote(r, 'shipping', 'YES')!;
    expect(tally(r)?.outcome).toBe('COMMIT');
  });

  it('aborts on the first NO with its reason', () => {
    const r = tx(3);
    r.votes.payment = { vote: 'NO', reason: 'insufficient funds', at: 't' };
    expect(tally(r)).toEqual({ outcome: 'ABORT', reason: 'payment voted NO' });
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

  it('property: whatever the delivery order and duplicates, exactly one decision write applies, with the right outcome', () => {
    fc.assert(
      fc.property(scenario, ({ n, votes, order }) => {
        let r = tx(n);
        let decisions = 0;
        for (const i of order) {
          const p = services[i]!;
          const voted = applyVote(r, p, votes[i]!);
          if (!voted) continue;
          r = voted;
          if (votes[i] === 'NO') decisions++;
          // Whoever records a vote tries the commit; the table refuses it unless every YES is in.
          const committed = write(r, LOG_TRANSITIONS.decideCommit.write('t'));
          if (committed) {
            decisions++;
            r = committed;
          }
        }
        expect(decisions).toBe(1);
        const expected = votes.includes('NO') ? 'ABORT' : 'COMMIT';
        expect(r.decision).toBe(expected);
        expect(tally(r)?.outcome).toBe(expected);
        if (expected === 'COMMIT') expect(awaitingVote(r)).toHaveLength(0);
      }),
    );
  });
});

describe('phase two', () => {
  it('waits for YES and READ_ONLY voters on COMMIT, and on ABORT also for those whose vote was never recorded; never for a NO voter or a released one', () => {
    const r = tx(4);
    r.votes = { inventory: { vote: 'YES', at: 't' }, payment: { vote: 'READ_ONLY', at: 't' }, shipping: { vote: 'NO', at: 't' } };
    // READ_ONLY keeps its read locks until it hears the decision (docs/consistency.md).
    expect(awaitingAck(r)).toEqual(['inventory', 'payment']);
    // On ABORT, a participant whose vote was never recorded may have prepared all the same: it is
    // sent ABORT until it acknowledges.
    r.decision = 'ABORT';
    expect(awaitingAck(r)).toEqual(['inventory', 'payment', 'order']);
    r.releases = { order: { operator: 'ops', reason: 'retired', at: 't' } };
    r.acks = { payment: { phase: 'ABORT', at: 't' } };
    expect(awaitingAck(r)).toEqual(['inventory']);
  });

  it('property: exactly one acknowledgement completes the phase, and finishing sets a TTL after the retention', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.array(fc.nat(3), { maxLength: 10 }), fc.boolean(), (n, extra, commit) => {
        let r = tx(n);
        // COMMIT after every YES; ABORT while the last member's vote is missing (it may have prepared).
        for (const s of services.slice(0, commit ? n : n - 1)) r = applyVote(r, s, 'YES')!;
        r = write(r, commit ? LOG_TRANSITIONS.decideCommit.write('t') : LOG_TRANSITIONS.decideAbort.write('r', 't'))!;
        expect(r).toBeDefined();
        const phase = commit ? 'COMMIT' : 'ABORT';
        const order = [...services.slice(0, n), ...extra.filter((i) => i < n).map((i) => services[i]!)].reverse();
        let completions = 0;
        for (const p of order) {
          const acked = write(r, LOG_TRANSITIONS.recordAck.write(p, { phase, at: 't' }));
          if (!acked) continue;
          const wasReady = readyToFinish(r);
          r = acked;
          if (!wasReady && readyToFinish(r)) completions++;
        }
        expect(completions).toBe(1);
        const result = phaseTwoResult(r.status as 'COMMITTING' | 'ABORTING', 1_000_000, 30);
        expect(result).toEqual({ from: r.status, final: commit ? 'COMMITTED' : 'ABORTED', expiresAt: 1000 + 30 * 86_400 });
        const done = write(r, LOG_TRANSITIONS.finalize.write(result, 't'))!;
        expect(done.status).toBe(result.final);
        expect(done.og).toBeUndefined();
        expect(write(done, LOG_TRANSITIONS.finalize.write(result, 't'))).toBeUndefined();
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
    expect(JSON.stringify(v)).not.toMatch(/pending|"ok"|"req"|"lp"|"og"/);
  });

  it('names the participants marked in doubt that still owe an acknowledgement, and where the transaction is parked', () => {
    const r = tx(3);
    r.status = 'COMMITTING';
    r.decision = 'COMMIT';
    r.votes = { inventory: { vote: 'YES', at: 'a' }, payment: { vote: 'YES', at: 'b' }, shipping: { vote: 'READ_ONLY', at: 'c' } };
    expect(inDoubt(r)).toEqual([]);
    r.inDoubtSince = 'd';
    r.acks = { inventory: { phase: 'COMMIT', at: 'e' }, shipping: { phase: 'COMMIT', at: 'e' } };
    r.parkedWith = 'payment';
    const v = toView(r);
    expect(v.inDoubt).toEqual(['payment']);
    expect(v.parkedWith).toBe('payment');
    expect(v.participants[0]).toMatchObject({ service: 'inventory', ack: 'COMMIT' });
    expect(v.participants[0]).not.toHaveProperty('inDoubtSince');
    expect(v.participants[1]).toMatchObject({ service: 'payment', inDoubtSince: 'd' });
    expect(v).not.toHaveProperty('releases');
  });

  it('shows each release with who, why and when, oldest first', () => {
    const r = tx(2);
    r.status = 'ABORTING';
    r.decision = 'ABORT';
    r.releases = { payment: { operator: 'bo', reason: 'retired', at: '2026-01-02' }, inventory: { operator: 'al', reason: 'gone', at: '2026-01-01' } };
    expect(toView(r).releases).toEqual([
      { participant: 'inventory', operator: 'al', reason: 'gone', at: '2026-01-01' },
      { participant: 'payment', operator: 'bo', reason: 'retired', at: '2026-01-02' },
    ]);
    expect(toView(r).participants[1]).toMatchObject({ service: 'payment', releasedAt: '2026-01-02', releasedBy: 'bo', releasedReason: 'retired' });
  });
});
