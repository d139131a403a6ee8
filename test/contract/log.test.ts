// One suite, two adapters of the transaction log: MemoryTxLog and TxLog on dynalite must answer every
// state change alike (applied or not, and the record), because the simulation runs the real use
// cases on the memory one. Cases first, then random sequences of operations run on both at once.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { BadCursorError } from '../../src/core/cursor';
import type { TxLogPort, WriteResult } from '../../src/core/ports';
import { type Outcome, type PhaseTwoResult, type TxRecord, newTransaction } from '../../src/core/transaction';
import { MemoryTxLog } from '../../src/memory/log';
import { startLocalAws } from '../support/aws';

/** The port, plus the state machine's Decide step that both adapters offer for tests and the simulation. */
type Log = TxLogPort & Pick<TxLog, 'decide'>;

interface Adapter {
  name: string;
  start(): Promise<{ log: Log; stop(): Promise<void> }>;
}

const ADAPTERS: Adapter[] = [
  { name: 'memory', start: async () => ({ log: new MemoryTxLog(), stop: async () => {} }) },
  {
    name: 'dynalite',
    start: async () => {
      // A dynalite of its own per suite, with the app's log table as the template defines it.
      const aws = await startLocalAws({ tables: ['log'] });
      return { log: new TxLog(documentClient(aws.dynamodb), aws.tables.log), stop: () => aws.stop() };
    },
  },
];

const T0 = Date.parse('2026-11-27T12:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const services = ['inventory', 'payment'];

function record(txId: string, nowMs = T0): TxRecord {
  return newTransaction({
    txId,
    request: { participants: services.map((service) => ({ service, operation: { n: 1 } })), timeouts: { prepareSeconds: 10, commitSeconds: 30 } },
    nowMs,
    requestHash: `hash-${txId}`,
  });
}

const commitResult: PhaseTwoResult = { from: 'COMMITTING', final: 'COMMITTED', expiresAt: 1_900_000_000 };
const decision = (outcome: Outcome) => ({ status: outcome === 'COMMIT' ? ('COMMITTING' as const) : ('ABORTING' as const), outcome, reason: `decided ${outcome}` });

describe.each(ADAPTERS)('the transaction log on $name', (adapter) => {
  let log: Log;
  let stop: () => Promise<void>;
  let n = 0;
  /** A fresh PREPARING transaction; every case works on its own ids. */
  const fresh = async (nowMs = T0): Promise<string> => {
    const txId = `tx-${++n}`;
    expect(await log.create(record(txId, nowMs))).toBe(true);
    return txId;
  };

  beforeAll(async () => {
    ({ log, stop } = await adapter.start());
  });
  afterAll(async () => {
    await stop?.();
  });

  it('creates a record once', async () => {
    const first = record('tx-create');
    expect(await log.create(first)).toBe(true);
    expect(await log.create({ ...record('tx-create'), requestHash: 'other' })).toBe(false);
    expect(await log.get('tx-create')).toEqual(first);
    expect(await log.get('tx-nobody')).toBeUndefined();
  });

  it('copies records in and out', async () => {
    const mine = record('tx-copy');
    await log.create(mine);
    mine.votes.inventory = { vote: 'YES', at: iso(T0) };
    const got = await log.get('tx-copy');
    got!.status = 'ABORTED';
    const voted = await log.recordVote('tx-copy', 'payment', { vote: 'YES', at: iso(T0 + 1) });
    voted.record!.votes.payment!.vote = 'NO';
    expect(await log.get('tx-copy')).toMatchObject({ status: 'PREPARING', votes: { payment: { vote: 'YES' } } });
    expect((await log.get('tx-copy'))?.votes.inventory).toBeUndefined();
  });

  it('records a vote once, only while preparing, and never for an unknown transaction', async () => {
    const txId = await fresh();
    const first = await log.recordVote(txId, 'inventory', { vote: 'YES', at: iso(T0 + 1) });
    expect(first.applied).toBe(true);
    expect(first.record).toMatchObject({ votes: { inventory: { vote: 'YES', at: iso(T0 + 1) } }, updatedAt: iso(T0 + 1) });

    const duplicate = await log.recordVote(txId, 'inventory', { vote: 'NO', reason: 'changed', at: iso(T0 + 2) });
    expect(duplicate).toEqual({ applied: false, record: first.record });

    await log.decideAbort(txId, 'timeout', iso(T0 + 3));
    const late = await log.recordVote(txId, 'payment', { vote: 'YES', at: iso(T0 + 4) });
    expect(late.applied).toBe(false);
    expect(late.record).toMatchObject({ status: 'ABORTING' });
    expect(late.record?.votes.payment).toBeUndefined();

    expect(await log.recordVote('tx-unknown', 'inventory', { vote: 'YES', at: iso(T0) })).toEqual({ applied: false, record: undefined });
    expect(await log.get('tx-unknown')).toBeUndefined();
  });

  it('records an acknowledgement once, only in the phase it acknowledges', async () => {
    const txId = await fresh();
    expect((await log.recordAck(txId, 'inventory', { phase: 'COMMIT', at: iso(T0 + 1) })).applied).toBe(false);
    await log.decide(txId, decision('COMMIT'), iso(T0 + 2));
    expect((await log.recordAck(txId, 'inventory', { phase: 'ABORT', at: iso(T0 + 3) })).applied).toBe(false);
    const ack = await log.recordAck(txId, 'inventory', { phase: 'COMMIT', at: iso(T0 + 4) });
    expect(ack.applied).toBe(true);
    expect(ack.record).toMatchObject({ acks: { inventory: { phase: 'COMMIT', at: iso(T0 + 4) } }, updatedAt: iso(T0 + 4) });
    expect(await log.recordAck(txId, 'inventory', { phase: 'COMMIT', at: iso(T0 + 5) })).toEqual({ applied: false, record: ack.record });
  });

  it('stores the task token of the current phase and counts its attempts', async () => {
    const txId = await fresh();
    await log.storeTaskToken(txId, 'PREPARE', 'p1', iso(T0 + 1));
    const second = await log.storeTaskToken(txId, 'PREPARE', 'p2', iso(T0 + 2));
    expect(second.record).toMatchObject({ taskToken: 'p2', taskPhase: 'PREPARE', prepareAttempts: 2, updatedAt: iso(T0 + 2) });
    expect((await log.storeTaskToken(txId, 'COMMIT', 'c1', iso(T0 + 3))).applied).toBe(false);

    await log.decideAbort(txId, 'client', iso(T0 + 4));
    const abort = await log.storeTaskToken(txId, 'ABORT', 'a1', iso(T0 + 5));
    expect(abort.applied).toBe(true);
    expect(abort.record).toMatchObject({ taskToken: 'a1', taskPhase: 'ABORT', prepareAttempts: 2, abortAttempts: 1 });
    expect(abort.record?.commitAttempts).toBeUndefined();
  });

  it('lets exactly one of racing aborts decide, and keeps the task token for the winner to wake', async () => {
    const txId = await fresh();
    await log.storeTaskToken(txId, 'PREPARE', 'p1', iso(T0 + 1));
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => log.decideAbort(txId, `reason ${i}`, iso(T0 + 10 + i))));
    const winners = results.filter((r) => r.applied);
    expect(winners).toHaveLength(1);
    const reason = winners[0]!.record!.decisionReason;
    for (const r of results) expect(r.record).toMatchObject({ status: 'ABORTING', decision: 'ABORT', decisionReason: reason, taskToken: 'p1', taskPhase: 'PREPARE' });
    expect((await log.decide(txId, decision('COMMIT'), iso(T0 + 20))).applied).toBe(false);
  });

  it("makes the state machine's decision once, dropping the prepare task's token", async () => {
    const txId = await fresh();
    await log.storeTaskToken(txId, 'PREPARE', 'p1', iso(T0 + 1));
    const decided = await log.decide(txId, decision('COMMIT'), iso(T0 + 2));
    expect(decided.applied).toBe(true);
    expect(decided.record).toMatchObject({ status: 'COMMITTING', decision: 'COMMIT', decisionReason: 'decided COMMIT', decidedAt: iso(T0 + 2), updatedAt: iso(T0 + 2) });
    expect(decided.record?.taskToken).toBeUndefined();
    expect(decided.record?.taskPhase).toBeUndefined();
    expect(await log.decideAbort(txId, 'late', iso(T0 + 3))).toEqual({ applied: false, record: decided.record });
  });

  it('finalizes once, from the phase-two status only', async () => {
    const txId = await fresh();
    expect((await log.finalize(txId, commitResult, iso(T0 + 1))).applied).toBe(false);
    await log.decide(txId, decision('COMMIT'), iso(T0 + 2));
    await log.storeTaskToken(txId, 'COMMIT', 'c1', iso(T0 + 3));
    expect((await log.finalize(txId, { from: 'ABORTING', final: 'ABORTED', expiresAt: 1 }, iso(T0 + 4))).applied).toBe(false);
    const done = await log.finalize(txId, commitResult, iso(T0 + 5));
    expect(done.applied).toBe(true);
    expect(done.record).toMatchObject({ status: 'COMMITTED', finishedAt: iso(T0 + 5), updatedAt: iso(T0 + 5), expiresAt: commitResult.expiresAt });
    expect(done.record).not.toHaveProperty('openPk');
    expect(done.record).not.toHaveProperty('taskToken');
    expect(await log.finalize(txId, commitResult, iso(T0 + 6))).toEqual({ applied: false, record: done.record });
  });

  it('refuses a finalize whose result is no state change, before writing', async () => {
    const txId = await fresh();
    await log.decide(txId, decision('COMMIT'), iso(T0 + 1));
    await expect(log.finalize(txId, { from: 'COMMITTING', final: 'ABORTED', expiresAt: 1 }, iso(T0 + 2))).rejects.toThrow(/COMMITTING -> ABORTED/);
    expect((await log.get(txId))?.status).toBe('COMMITTING');
  });

  it('marks participants in doubt once, in the phase named, leaving updatedAt alone', async () => {
    const txId = await fresh();
    expect((await log.markInDoubt(txId, 'COMMIT', { inventory: iso(T0) })).applied).toBe(false);
    await log.decide(txId, decision('COMMIT'), iso(T0 + 1));
    expect((await log.markInDoubt(txId, 'ABORT', { inventory: iso(T0 + 2) })).applied).toBe(false);
    const marked = await log.markInDoubt(txId, 'COMMIT', { inventory: iso(T0 + 3) });
    expect(marked.applied).toBe(true);
    expect(marked.record).toMatchObject({ inDoubtSince: { inventory: iso(T0 + 3) }, updatedAt: iso(T0 + 1) });
    expect(await log.markInDoubt(txId, 'COMMIT', { payment: iso(T0 + 4) })).toEqual({ applied: false, record: marked.record });
  });

  it('lets one claimant win each recovery, and none once the transaction finished', async () => {
    const txId = await fresh();
    const seen = { executionName: txId, recoveries: 0 };
    const claims = await Promise.all(['a', 'b', 'c', 'd'].map((who) => log.claimRecovery(txId, seen, { executionName: `${txId}-r1-${who}`, at: iso(T0 + 1) })));
    const winners = claims.filter((c) => c.applied);
    expect(winners).toHaveLength(1);
    const claimed = winners[0]!.record!;
    expect(claimed).toMatchObject({ recoveries: 1, updatedAt: iso(T0 + 1) });
    for (const c of claims) expect(c.record?.executionName).toBe(claimed.executionName);
    expect((await log.claimRecovery(txId, seen, { executionName: 'stale', at: iso(T0 + 2) })).applied).toBe(false);

    const next = await log.claimRecovery(txId, { executionName: claimed.executionName!, recoveries: 1 }, { executionName: `${txId}-r2`, at: iso(T0 + 3) });
    expect(next.record).toMatchObject({ executionName: `${txId}-r2`, recoveries: 2 });

    await log.decideAbort(txId, 'recovery', iso(T0 + 4));
    await log.finalize(txId, { from: 'ABORTING', final: 'ABORTED', expiresAt: 1 }, iso(T0 + 5));
    expect((await log.claimRecovery(txId, { executionName: `${txId}-r2`, recoveries: 2 }, { executionName: `${txId}-r3`, at: iso(T0 + 6) })).applied).toBe(false);
  });

  it('claims a record that names no execution as its first recovery', async () => {
    const txId = 'tx-old-record';
    const { executionName: _dropped, ...old } = record(txId);
    await log.create(old as TxRecord);
    const claim = await log.claimRecovery(txId, { executionName: txId, recoveries: 0 }, { executionName: `${txId}-r1`, at: iso(T0 + 1) });
    expect(claim.applied).toBe(true);
  });

  it('lists open transactions not updated since a time, oldest first, page by page', async () => {
    // In 1990, so no other case's records (2026) are stale enough to show.
    const base = Date.parse('1990-01-01T00:00:00Z');
    const ids = ['stale-c', 'stale-a', 'stale-e', 'stale-b', 'stale-d'];
    const at: Record<string, number> = { 'stale-a': 1, 'stale-b': 2, 'stale-c': 3, 'stale-d': 3, 'stale-e': 5 };
    for (const id of ids) await log.create(record(id, base + at[id]! * 1000));
    await log.create(record('stale-late', base + 10_000));
    // A finished one leaves the index.
    await log.decideAbort('stale-e', 'old', iso(base + 5000));
    await log.finalize('stale-e', { from: 'ABORTING', final: 'ABORTED', expiresAt: 1 }, iso(base + 5000));

    const before = iso(base + 5000);
    const seen: string[] = [];
    let startKey: Record<string, unknown> | undefined;
    let pages = 0;
    do {
      const page = await log.listStale(before, 2, startKey);
      seen.push(...page.items.map((i) => i.txId));
      startKey = page.nextKey;
      pages++;
    } while (startKey && pages < 10);
    // Records updated at the same time come in an order the index leaves open.
    expect(seen.slice(0, 2)).toEqual(['stale-a', 'stale-b']);
    expect(seen.slice(2).sort()).toEqual(['stale-c', 'stale-d']);
    const first = await log.listStale(before, 1);
    expect(first.items).toEqual([{ txId: 'stale-a', status: 'PREPARING', updatedAt: iso(base + 1000), prepareDeadlineAt: base + 11_000 }]);
  });

  it('lists transactions newest first with an opaque cursor', async () => {
    // In 2100, so these are the newest of every case's records.
    const base = Date.parse('2100-01-01T00:00:00Z');
    for (let i = 1; i <= 5; i++) await log.create(record(`newest-${i}`, base + i * 1000));
    await log.decideAbort('newest-4', 'client', iso(base + 6000));

    const first = await log.list(2);
    expect(first.items.map((i) => i.txId)).toEqual(['newest-5', 'newest-4']);
    expect(first.items[1]).toEqual({ txId: 'newest-4', status: 'ABORTING', createdAt: iso(base + 4000), updatedAt: iso(base + 6000), decision: 'ABORT', decisionReason: 'client' });
    const second = await log.list(2, first.nextCursor);
    expect(second.items.map((i) => i.txId)).toEqual(['newest-3', 'newest-2']);
    const third = await log.list(1, second.nextCursor);
    expect(third.items.map((i) => i.txId)).toEqual(['newest-1']);
    await expect(log.list(2, 'not a cursor')).rejects.toThrow(BadCursorError);
  });

  it('answers the first claim of an idempotency key to every later claim', async () => {
    const first = await log.claimIdempotencyKey('key-1', 'tx-a', 'hash-a', iso(T0));
    expect(first).toEqual({ pk: 'idem#key-1', txId: 'tx-a', requestHash: 'hash-a', createdAt: iso(T0) });
    expect(await log.claimIdempotencyKey('key-1', 'tx-b', 'hash-b', iso(T0 + 1))).toEqual(first);
    expect((await log.claimIdempotencyKey('key-2', 'tx-b', 'hash-b', iso(T0 + 1))).txId).toBe('tx-b');
  });
});

// ---------------------------------------------------------------------------------------------
// Random sequences of operations: both adapters answer each one alike.

type Op =
  | { kind: 'create'; tx: number; atS: number }
  | { kind: 'vote'; tx: number; p: number; vote: 'YES' | 'NO' | 'READ_ONLY' }
  | { kind: 'ack'; tx: number; p: number; phase: 'COMMIT' | 'ABORT' }
  | { kind: 'token'; tx: number; phase: 'PREPARE' | 'COMMIT' | 'ABORT' }
  | { kind: 'decide'; tx: number; outcome: Outcome }
  | { kind: 'decideAbort'; tx: number }
  | { kind: 'finalize'; tx: number; outcome: Outcome }
  | { kind: 'inDoubt'; tx: number; phase: 'COMMIT' | 'ABORT' }
  | { kind: 'claim'; tx: number; seen: number; recoveries: number }
  | { kind: 'idem'; key: number; tx: number };

const tx = fc.integer({ min: 0, max: 2 });
const p = fc.integer({ min: 0, max: 1 });
const outcome = fc.constantFrom<Outcome>('COMMIT', 'ABORT');
const phase2 = fc.constantFrom<'COMMIT' | 'ABORT'>('COMMIT', 'ABORT');
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('create' as const), tx, atS: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ kind: fc.constant('vote' as const), tx, p, vote: fc.constantFrom<'YES' | 'NO' | 'READ_ONLY'>('YES', 'NO', 'READ_ONLY') }),
  fc.record({ kind: fc.constant('ack' as const), tx, p, phase: phase2 }),
  fc.record({ kind: fc.constant('token' as const), tx, phase: fc.constantFrom<'PREPARE' | 'COMMIT' | 'ABORT'>('PREPARE', 'COMMIT', 'ABORT') }),
  fc.record({ kind: fc.constant('decide' as const), tx, outcome }),
  fc.record({ kind: fc.constant('decideAbort' as const), tx }),
  fc.record({ kind: fc.constant('finalize' as const), tx, outcome }),
  fc.record({ kind: fc.constant('inDoubt' as const), tx, phase: phase2 }),
  fc.record({ kind: fc.constant('claim' as const), tx, seen: fc.integer({ min: 0, max: 2 }), recoveries: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ kind: fc.constant('idem' as const), key: fc.integer({ min: 0, max: 1 }), tx }),
);

/** One operation on one log; `run` names this sequence's ids so runs share the table without meeting. */
function perform(log: Log, run: number, o: Op, step: number): Promise<WriteResult | boolean | unknown> {
  const at = iso(T0 + step * 1000);
  const id = (i: number) => `prop-${run}-${i}`;
  const name = (txId: string, n: number) => (n === 0 ? txId : `${txId}-r${n}`);
  switch (o.kind) {
    case 'create':
      return log.create(record(id(o.tx), T0 + o.atS * 1000));
    case 'vote':
      return log.recordVote(id(o.tx), services[o.p]!, { vote: o.vote, at, ...(o.vote === 'NO' ? { reason: 'no' } : {}) });
    case 'ack':
      return log.recordAck(id(o.tx), services[o.p]!, { phase: o.phase, at });
    case 'token':
      return log.storeTaskToken(id(o.tx), o.phase, `token-${step}`, at);
    case 'decide':
      return log.decide(id(o.tx), decision(o.outcome), at);
    case 'decideAbort':
      return log.decideAbort(id(o.tx), `abort at ${step}`, at);
    case 'finalize':
      return log.finalize(id(o.tx), o.outcome === 'COMMIT' ? commitResult : { from: 'ABORTING', final: 'ABORTED', expiresAt: 1_900_000_000 }, at);
    case 'inDoubt':
      return log.markInDoubt(id(o.tx), o.phase, { [services[0]!]: at });
    case 'claim':
      return log.claimRecovery(id(o.tx), { executionName: name(id(o.tx), o.seen), recoveries: o.recoveries }, { executionName: name(id(o.tx), o.recoveries + 1), at });
    case 'idem':
      return log.claimIdempotencyKey(`prop-${run}-key-${o.key}`, id(o.tx), `hash-${o.tx}`, at);
  }
}

describe('memory and dynalite, on random sequences of operations', () => {
  let dynalite: { log: Log; stop(): Promise<void> };
  beforeAll(async () => {
    dynalite = await ADAPTERS[1]!.start();
  });
  afterAll(async () => {
    await dynalite?.stop();
  });

  it('answer every operation alike and end with the same records', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
        run++;
        const memory = new MemoryTxLog();
        for (const [step, o] of ops.entries()) {
          const [m, d] = await Promise.all([perform(memory, run, o, step), perform(dynalite.log, run, o, step)]);
          expect({ step, o, result: m }).toEqual({ step, o, result: d });
        }
        for (const i of [0, 1, 2]) expect(await memory.get(`prop-${run}-${i}`)).toEqual(await dynalite.log.get(`prop-${run}-${i}`));
      }),
      { numRuns: 30, seed: 20261127 },
    );
  });
});
