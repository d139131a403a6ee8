// One suite, two adapters of the transaction log: MemoryTxLog and TxLog on dynalite must answer every
// state change alike (applied or not, and the record), because the simulation and the unit tests run
// the real use cases on the memory one. The commit point's conditions are checked on both; then the
// indexes (supervision's `open`, the sharded listing), generations and idempotency claims; then random
// sequences of operations run on both at once.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { BadCursorError, encodeCursor } from '../../src/core/cursor';
import type { TxLogPort, WriteResult } from '../../src/core/ports';
import {
  DEFAULT_SUPERVISION,
  LIST_SHARDS,
  type OpsRecord,
  type PhaseTwoResult,
  type TxRecord,
  type VoteEntry,
  idSlot,
  listShard,
  newOps,
  newTransaction,
} from '../../src/core/transaction';
import { MemoryTxLog } from '../../src/memory/log';
import { GROUP_KEPT_DAYS } from '../../src/core/log-transitions';
import { startLocalAws } from '../support/aws';

interface Adapter {
  name: string;
  start(): Promise<{ log: TxLogPort; stop(): Promise<void> }>;
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

function request(members: readonly string[], prepareSeconds = 10) {
  return { participants: members.map((service) => ({ service, operation: { n: 1, big: 1e308 } })), timeouts: { prepareSeconds, commitSeconds: 30 } };
}

function record(txId: string, nowMs = T0, members: readonly string[] = services): TxRecord {
  return newTransaction({ txId, request: request(members), nowMs, requestHash: `hash-${txId}`, supervision: DEFAULT_SUPERVISION });
}

const opsOf = (txId: string, nowMs = T0, members: readonly string[] = services): OpsRecord => newOps(txId, request(members), nowMs, 30);
const yes = (atMs: number, vote: 'YES' | 'READ_ONLY' = 'YES'): VoteEntry => ({ vote, at: iso(atMs) });
const no = (atMs: number, reason = 'refused'): VoteEntry => ({ vote: 'NO', reason, at: iso(atMs) });
const commitResult: PhaseTwoResult = { from: 'COMMITTING', final: 'COMMITTED', expiresAt: 1_900_000_000 };
const abortResult: PhaseTwoResult = { from: 'ABORTING', final: 'ABORTED', expiresAt: 1_900_000_000 };

describe.each(ADAPTERS)('the transaction log on $name', (adapter) => {
  let log: TxLogPort;
  let stop: () => Promise<void>;
  let n = 0;
  /** Every transaction this suite created: what a full listing must show. */
  const created = new Map<string, string>();
  const create = async (r: TxRecord, nowMs = Date.parse(r.createdAt)): Promise<boolean> => {
    const ok = await log.create(r, opsOf(r.txId, nowMs, r.services));
    if (ok) created.set(r.txId, r.createdAt);
    return ok;
  };
  /** A fresh PREPARING transaction; every case works on its own ids. */
  const fresh = async (nowMs = T0, members: readonly string[] = services): Promise<TxRecord> => {
    const r = record(`tx-case-${String(++n).padStart(4, '0')}`, nowMs, members);
    expect(await create(r, nowMs)).toBe(true);
    return r;
  };

  beforeAll(async () => {
    ({ log, stop } = await adapter.start());
  });
  afterAll(async () => {
    await stop?.();
  });

  it('writes the operations item, then the record, once; a retried create is refused and changes nothing', async () => {
    const first = record('tx-create-0001');
    expect(await create(first)).toBe(true);
    expect(await log.create({ ...record('tx-create-0001'), requestHash: 'other' }, opsOf('tx-create-0001'))).toBe(false);
    expect(await log.get('tx-create-0001')).toEqual(first);
    // The operations stay JSON text: a number DynamoDB cannot store (1e308) survives.
    const ops = await log.getOps('tx-create-0001');
    expect(ops).toEqual(opsOf('tx-create-0001'));
    expect(JSON.parse(ops!.participants)[0].operation.big).toBe(1e308);
    expect(await log.get('tx-nobody-0001')).toBeUndefined();
    expect(await log.getOps('tx-nobody-0001')).toBeUndefined();
    await expect(log.create(record('tx-create-0002'), opsOf('tx-create-0001'))).rejects.toThrow(/does not belong/);
  });

  it('copies records in and out', async () => {
    const mine = record('tx-copy-0001');
    await create(mine);
    mine.votes.inventory = yes(T0);
    const got = await log.get('tx-copy-0001');
    got!.status = 'ABORTED';
    const voted = await log.recordYes('tx-copy-0001', 'payment', yes(T0 + 1), T0 + 1);
    voted.record!.votes.payment!.vote = 'NO';
    expect(await log.get('tx-copy-0001')).toMatchObject({ status: 'PREPARING', votes: { payment: { vote: 'YES' } } });
    expect((await log.get('tx-copy-0001'))?.votes.inventory).toBeUndefined();
  });

  it('reads many records in one call (over 100 keys), leaving out absent ids and duplicates', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 105; i++) ids.push((await fresh(T0 + i)).txId);
    const got = await log.getMany([...ids, ids[0]!, 'tx-absent-0001']);
    expect(got.map((r) => r.txId).sort()).toEqual([...ids].sort());
    expect(await log.getMany([])).toEqual([]);
  });

  describe('the commit point', () => {
    it('counts a vote only from a member whose vote is pending: a stranger or a duplicate changes nothing', async () => {
      const r = await fresh();
      const before = await log.get(r.txId);
      for (const result of [
        await log.recordYes(r.txId, 'shipping', yes(T0 + 1), T0 + 1),
        await log.recordNo(r.txId, 'shipping', no(T0 + 1), 'shipping voted NO'),
        await log.recordAck(r.txId, 'shipping', { phase: 'ABORT', at: iso(T0 + 1) }),
      ]) {
        expect(result).toEqual({ applied: false, record: before });
      }
      const first = await log.recordYes(r.txId, 'inventory', yes(T0 + 2), T0 + 2);
      expect(first.applied).toBe(true);
      expect(first.record).toMatchObject({ ok: 1, req: 2, pending: { payment: true }, votes: { inventory: { vote: 'YES', at: iso(T0 + 2) } }, updatedAt: iso(T0 + 2) });
      expect(first.record?.pending).not.toHaveProperty('inventory');
      // A duplicate YES does not count twice, and a member that voted cannot change its vote.
      expect(await log.recordYes(r.txId, 'inventory', yes(T0 + 3), T0 + 3)).toEqual({ applied: false, record: first.record });
      expect(await log.recordYes(r.txId, 'inventory', yes(T0 + 3, 'READ_ONLY'), T0 + 3)).toEqual({ applied: false, record: first.record });
      expect(await log.recordNo(r.txId, 'inventory', no(T0 + 3), 'inventory voted NO')).toEqual({ applied: false, record: first.record });
      expect(await log.recordYes('tx-unknown-0001', 'inventory', yes(T0), T0)).toEqual({ applied: false, record: undefined });
      expect(await log.get('tx-unknown-0001')).toBeUndefined();
    });

    it('decides COMMIT only when ok = req, attribute against attribute: a decideCommit short of a YES fails', async () => {
      const members = ['inventory', 'payment', 'shipping'];
      const r = await fresh(T0, members);
      expect((await log.decideCommit(r.txId, iso(T0 + 1))).applied).toBe(false);
      await log.recordYes(r.txId, 'inventory', yes(T0 + 1), T0 + 1);
      await log.recordYes(r.txId, 'payment', yes(T0 + 2, 'READ_ONLY'), T0 + 2);
      const short = await log.decideCommit(r.txId, iso(T0 + 3));
      expect(short.applied).toBe(false);
      expect(short.record).toMatchObject({ status: 'PREPARING', ok: 2, req: 3 });
      expect(short.record).not.toHaveProperty('decision');
      await log.recordYes(r.txId, 'shipping', yes(T0 + 4), T0 + 4);
      const decided = await log.decideCommit(r.txId, iso(T0 + 5));
      expect(decided.applied).toBe(true);
      expect(decided.record).toMatchObject({
        status: 'COMMITTING',
        decision: 'COMMIT',
        decisionReason: 'every participant voted YES',
        decidedAt: iso(T0 + 5),
        updatedAt: iso(T0 + 5),
        ok: 3,
        req: 3,
      });
      expect(await log.decideCommit(r.txId, iso(T0 + 6))).toEqual({ applied: false, record: decided.record });
    });

    it('lets anyone but a NO voter abort only while a YES is missing; once every YES is in, COMMIT is the only outcome', async () => {
      const open = await fresh();
      await log.recordYes(open.txId, 'inventory', yes(T0 + 1), T0 + 1);
      const aborted = await log.decideAbort(open.txId, 'client asked', iso(T0 + 2));
      expect(aborted.applied).toBe(true);
      expect(aborted.record).toMatchObject({ status: 'ABORTING', decision: 'ABORT', decisionReason: 'client asked', decidedAt: iso(T0 + 2) });
      expect((await log.decideAbort(open.txId, 'again', iso(T0 + 3))).applied).toBe(false);
      expect((await log.decideCommit(open.txId, iso(T0 + 3))).applied).toBe(false);

      const full = await fresh();
      await log.recordYes(full.txId, 'inventory', yes(T0 + 1), T0 + 1);
      const allIn = await log.recordYes(full.txId, 'payment', yes(T0 + 2), T0 + 2);
      // Every YES recorded, no decision written (its decider crashed): no abort of any kind is possible.
      expect(await log.decideAbort(full.txId, 'client asked', iso(T0 + 3))).toEqual({ applied: false, record: allIn.record });
      expect(await log.decideAbort(full.txId, 'prepare deadline passed', iso(T0 + 60_000), T0 + 60_000)).toEqual({ applied: false, record: allIn.record });
      expect((await log.decideCommit(full.txId, iso(T0 + 60_001))).record).toMatchObject({ status: 'COMMITTING', decision: 'COMMIT' });
    });

    it('records a NO and decides ABORT in one write, with its reason clipped; nothing else can decide after it', async () => {
      const r = await fresh();
      const voted = await log.recordNo(r.txId, 'payment', no(T0 + 1, 'insufficient funds'), `payment voted NO: ${'x'.repeat(300)}`);
      expect(voted.applied).toBe(true);
      expect(voted.record).toMatchObject({ status: 'ABORTING', decision: 'ABORT', decidedAt: iso(T0 + 1), ok: 0, votes: { payment: { vote: 'NO', reason: 'insufficient funds' } } });
      expect(voted.record?.decisionReason).toHaveLength(120);
      for (const result of [
        await log.recordYes(r.txId, 'inventory', yes(T0 + 2), T0 + 2),
        await log.recordNo(r.txId, 'inventory', no(T0 + 2), 'late'),
        await log.decideAbort(r.txId, 'late', iso(T0 + 2)),
        await log.decideCommit(r.txId, iso(T0 + 2)),
      ]) {
        expect(result).toEqual({ applied: false, record: voted.record });
      }
    });

    it("records no vote at or after the deadline by the recorder's clock", async () => {
      const r = await fresh();
      const deadline = r.prepareDeadlineAt;
      expect(deadline).toBe(T0 + 10_000);
      expect((await log.recordYes(r.txId, 'inventory', yes(deadline), deadline)).applied).toBe(false);
      expect((await log.recordYes(r.txId, 'inventory', yes(deadline + 5_000), deadline + 5_000)).applied).toBe(false);
      expect((await log.get(r.txId))?.votes).toEqual({});
      expect((await log.recordYes(r.txId, 'inventory', yes(deadline - 1), deadline - 1)).applied).toBe(true);
    });

    it("aborts on the deadline only once it has passed by the aborter's clock", async () => {
      const r = await fresh();
      const early = await log.decideAbort(r.txId, 'prepare deadline passed', iso(r.prepareDeadlineAt - 1), r.prepareDeadlineAt - 1);
      expect(early.applied).toBe(false);
      expect(early.record?.status).toBe('PREPARING');
      const onTime = await log.decideAbort(r.txId, 'prepare deadline passed', iso(r.prepareDeadlineAt), r.prepareDeadlineAt);
      expect(onTime.applied).toBe(true);
      expect(onTime.record).toMatchObject({ status: 'ABORTING', decidedAt: iso(r.prepareDeadlineAt) });
    });

    it('lets exactly one decision win a race of the last YES, a NO and aborts', async () => {
      for (let round = 0; round < 4; round++) {
        const r = await fresh(T0, ['inventory', 'payment', 'shipping']);
        await log.recordYes(r.txId, 'inventory', yes(T0 + 1), T0 + 1);
        await log.recordYes(r.txId, 'payment', yes(T0 + 2), T0 + 2);
        const [last, ...aborts] = await Promise.all([
          log.recordYes(r.txId, 'shipping', yes(T0 + 3), T0 + 3),
          log.decideAbort(r.txId, 'detector', iso(T0 + 3)),
          log.decideAbort(r.txId, 'client', iso(T0 + 3)),
          log.recordNo(r.txId, 'shipping', no(T0 + 3), 'shipping voted NO'),
        ]);
        const abortsApplied = aborts.filter((a) => a.applied).length;
        expect(abortsApplied + (last.applied ? 1 : 0)).toBe(1);
        const commit = await log.decideCommit(r.txId, iso(T0 + 4));
        expect(commit.applied).toBe(last.applied);
        expect(commit.record?.decision).toBe(last.applied ? 'COMMIT' : 'ABORT');
      }
    });
  });

  it('records an acknowledgement once, from a member, only in the phase it acknowledges', async () => {
    const r = await fresh();
    expect((await log.recordAck(r.txId, 'inventory', { phase: 'COMMIT', at: iso(T0 + 1) })).applied).toBe(false);
    await log.recordYes(r.txId, 'inventory', yes(T0 + 1), T0 + 1);
    await log.recordYes(r.txId, 'payment', yes(T0 + 1), T0 + 1);
    await log.decideCommit(r.txId, iso(T0 + 2));
    expect((await log.recordAck(r.txId, 'inventory', { phase: 'ABORT', at: iso(T0 + 3) })).applied).toBe(false);
    expect((await log.recordAck(r.txId, 'shipping', { phase: 'COMMIT', at: iso(T0 + 3) })).applied).toBe(false);
    const ack = await log.recordAck(r.txId, 'inventory', { phase: 'COMMIT', at: iso(T0 + 4) });
    expect(ack.applied).toBe(true);
    expect(ack.record).toMatchObject({ acks: { inventory: { phase: 'COMMIT', at: iso(T0 + 4) } }, updatedAt: iso(T0 + 4) });
    expect(await log.recordAck(r.txId, 'inventory', { phase: 'COMMIT', at: iso(T0 + 5) })).toEqual({ applied: false, record: ack.record });
  });

  it('finalizes once, from the phase-two status only, and leaves the open index', async () => {
    const r = await fresh();
    expect((await log.finalize(r.txId, commitResult, iso(T0 + 1))).applied).toBe(false);
    await log.decideAbort(r.txId, 'client', iso(T0 + 2));
    expect((await log.finalize(r.txId, commitResult, iso(T0 + 3))).applied).toBe(false);
    const done = await log.finalize(r.txId, abortResult, iso(T0 + 5));
    expect(done.applied).toBe(true);
    expect(done.record).toMatchObject({ status: 'ABORTED', finishedAt: iso(T0 + 5), updatedAt: iso(T0 + 5), expiresAt: abortResult.expiresAt });
    expect(done.record).not.toHaveProperty('og');
    expect(await log.finalize(r.txId, abortResult, iso(T0 + 6))).toEqual({ applied: false, record: done.record });
  });

  it('refuses a finalize whose result is no state change, before writing', async () => {
    const r = await fresh();
    await log.decideAbort(r.txId, 'client', iso(T0 + 1));
    await expect(log.finalize(r.txId, { from: 'COMMITTING', final: 'ABORTED', expiresAt: 1 }, iso(T0 + 2))).rejects.toThrow(/COMMITTING -> ABORTED/);
    expect((await log.get(r.txId))?.status).toBe('ABORTING');
  });

  it('marks participants in doubt once, in the phase named, leaving updatedAt alone', async () => {
    const r = await fresh();
    expect((await log.markInDoubt(r.txId, 'ABORT', iso(T0))).applied).toBe(false);
    await log.decideAbort(r.txId, 'client', iso(T0 + 1));
    expect((await log.markInDoubt(r.txId, 'COMMIT', iso(T0 + 2))).applied).toBe(false);
    const marked = await log.markInDoubt(r.txId, 'ABORT', iso(T0 + 3));
    expect(marked.applied).toBe(true);
    expect(marked.record).toMatchObject({ inDoubtSince: iso(T0 + 3), updatedAt: iso(T0 + 1) });
    expect(await log.markInDoubt(r.txId, 'ABORT', iso(T0 + 4))).toEqual({ applied: false, record: marked.record });
  });

  it("parks a decided transaction's phase two with one participant's group, once, and never a finished one", async () => {
    const r = await fresh();
    expect((await log.park(r.txId, 'ABORT', 'payment')).applied).toBe(false);
    await log.decideAbort(r.txId, 'client', iso(T0 + 1));
    expect((await log.park(r.txId, 'COMMIT', 'payment')).applied).toBe(false);
    const parked = await log.park(r.txId, 'ABORT', 'payment');
    expect(parked.applied).toBe(true);
    expect(parked.record).toMatchObject({ og: 'park-payment', parkedWith: 'payment', updatedAt: iso(T0 + 1) });
    expect(await log.park(r.txId, 'ABORT', 'inventory')).toEqual({ applied: false, record: parked.record });

    const done = await fresh();
    await log.decideAbort(done.txId, 'client', iso(T0 + 1));
    await log.finalize(done.txId, abortResult, iso(T0 + 2));
    expect((await log.park(done.txId, 'ABORT', 'payment')).applied).toBe(false);
  });

  describe("supervision's sparse index", () => {
    /** A transaction in a group of the test's own (the content-defined group replaced), created at `createdMs`. */
    const member = async (group: string, createdMs: number): Promise<TxRecord> => {
      const r = { ...record(`tx-member-${String(++n).padStart(4, '0')}`, createdMs), og: group };
      expect(await create(r, createdMs)).toBe(true);
      return r;
    };
    const allMembers = async (group: string, limit: number): Promise<{ txId: string; prepareDeadlineAt: number }[][]> => {
      const pages: { txId: string; prepareDeadlineAt: number }[][] = [];
      let key: Record<string, unknown> | undefined;
      do {
        const page = await log.openMembers(group, limit, key);
        pages.push(page.items);
        key = page.nextKey;
      } while (key && pages.length < 20);
      return pages;
    };

    it("serves a group's open members earliest deadline first, page by page; finished ones leave, parked ones move", async () => {
      const group = 'g-1900000000-10-1';
      const base = Date.parse('2030-02-01T00:00:00Z');
      const made = [];
      for (const offset of [5, 1, 4, 1, 3, 2]) made.push(await member(group, base + offset * 1000));
      const other = await member('g-1900000000-10-2', base);
      const pages = await allMembers(group, 2);
      expect(pages.slice(0, 3).map((p) => p.length)).toEqual([2, 2, 2]);
      const seen = pages.flat();
      expect(seen.map((i) => i.txId).sort()).toEqual(made.map((r) => r.txId).sort());
      expect(seen.map((i) => i.prepareDeadlineAt)).toEqual([...seen.map((i) => i.prepareDeadlineAt)].sort((a, b) => a - b));
      expect(seen[0]).toEqual({ txId: expect.any(String), prepareDeadlineAt: base + 11_000 });
      expect((await log.openMembers('g-1900000000-10-2', 10)).items).toEqual([{ txId: other.txId, prepareDeadlineAt: other.prepareDeadlineAt }]);

      // Finishing removes the index key; parking moves it to the participant's group.
      const [a, b] = made;
      await log.decideAbort(a!.txId, 'client', iso(base + 6_000));
      await log.finalize(a!.txId, abortResult, iso(base + 6_000));
      await log.decideAbort(b!.txId, 'client', iso(base + 6_000));
      await log.park(b!.txId, 'ABORT', 'shipping');
      const after = (await allMembers(group, 100)).flat().map((i) => i.txId);
      expect(after.sort()).toEqual(made.slice(2).map((r) => r.txId).sort());
      expect((await log.openMembers('park-shipping', 10)).items.map((i) => i.txId)).toContain(b!.txId);
      expect((await log.openMembers('g-1900000000-10-99', 10)).items).toEqual([]);
      await expect(log.openMembers(group, 0)).rejects.toThrow();
    });

    it('counts the open members of every group', async () => {
      for (let i = 0; i < 3; i++) await member('g-1900000100-10-5', T0 + i);
      await member('g-1900000100-10-6', T0);
      const counts: Record<string, number> = {};
      let key: Record<string, unknown> | undefined;
      let pages = 0;
      do {
        const page = await log.openGroups(7, key);
        for (const [g, c] of Object.entries(page.groups)) counts[g] = (counts[g] ?? 0) + c;
        key = page.nextKey;
      } while (key && ++pages < 1000);
      expect(counts['g-1900000100-10-5']).toBe(3);
      expect(counts['g-1900000100-10-6']).toBe(1);
      // Every key of the sparse index is an open transaction's group; finished ones are not there.
      const open = (await log.getMany([...created.keys()])).filter((r) => r.og !== undefined);
      expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(open.length);
    });
  });

  it('claims a group\'s first start once (generation 0): one of racing claimants wins, and generation 1 can still be claimed over it', async () => {
    const group = `g-1900000300-10-${adapter.name === 'memory' ? 0 : 1}`;
    const claims = await Promise.all([1, 2, 3, 4].map((i) => log.claimGroup(group, -1, iso(T0 + i))));
    const winners = claims.filter((c) => c !== undefined);
    expect(winners).toHaveLength(1);
    expect(winners[0]).toMatchObject({ pk: `grp#${group}`, group, gen: 0, execution: group });
    expect(await log.readGroup(group)).toEqual(winners[0]);
    expect(await log.claimGroup(group, -1, iso(T0 + 10))).toBeUndefined();
    expect(await log.claimGroup(group, 0, iso(T0 + 11))).toMatchObject({ gen: 1, execution: `${group}-g1` });
    expect(await log.claimGroup(group, -1, iso(T0 + 12))).toBeUndefined();
    await expect(log.claimGroup(group, -2, iso(T0 + 13))).rejects.toThrow(/seenGen/);
  });

  it('claims each generation of a group once: one of racing claimants wins, later claims of a seen generation fail', async () => {
    const group = `g-1900000200-10-${adapter.name === 'memory' ? 0 : 1}`;
    expect(await log.readGroup(group)).toBeUndefined();
    const claims = await Promise.all([1, 2, 3, 4].map((i) => log.claimGroup(group, 0, iso(T0 + i))));
    const winners = claims.filter((c) => c !== undefined);
    expect(winners).toHaveLength(1);
    expect(winners[0]).toMatchObject({ pk: `grp#${group}`, group, gen: 1, execution: `${group}-g1` });
    expect(await log.readGroup(group)).toEqual(winners[0]);
    expect(await log.claimGroup(group, 0, iso(T0 + 10))).toBeUndefined();
    expect(await log.claimGroup(group, 2, iso(T0 + 10))).toBeUndefined();
    const second = await log.claimGroup(group, 1, iso(T0 + 11));
    expect(second).toEqual({ pk: `grp#${group}`, group, gen: 2, execution: `${group}-g2`, at: iso(T0 + 11), expiresAt: Math.floor((T0 + 11) / 1000) + GROUP_KEPT_DAYS * 86_400 });
    expect(await log.readGroup(group)).toEqual(second);
  });

  it('answers the first claim of an idempotency key to every later claim', async () => {
    const first = await log.claimIdempotencyKey('key-1', 'tx-a', 'hash-a', iso(T0), 1_900_000_000);
    expect(first).toEqual({ pk: 'idem#key-1', txId: 'tx-a', requestHash: 'hash-a', createdAt: iso(T0), expiresAt: 1_900_000_000 });
    expect(await log.claimIdempotencyKey('key-1', 'tx-b', 'hash-b', iso(T0 + 1), 1_900_000_001)).toEqual(first);
    expect((await log.claimIdempotencyKey('key-2', 'tx-b', 'hash-b', iso(T0 + 1), 1_900_000_001)).txId).toBe('tx-b');
  });

  it("finishes an idempotency key only for its own transaction, never creating one, and keeps items only longer", async () => {
    await log.claimIdempotencyKey('key-3', 'tx-c', 'hash-c', iso(T0), 1_900_000_000);
    expect(await log.finishIdempotencyKey('key-3', 'tx-other', 1_950_000_000, iso(T0 + 1))).toBe(false);
    expect(await log.finishIdempotencyKey('key-none', 'tx-c', 1_950_000_000, iso(T0 + 1))).toBe(false);
    expect(await log.finishIdempotencyKey('key-3', 'tx-c', 1_950_000_000, iso(T0 + 2))).toBe(true);
    expect(await log.claimIdempotencyKey('key-3', 'tx-d', 'hash-d', iso(T0 + 3), 1)).toEqual({
      pk: 'idem#key-3', txId: 'tx-c', requestHash: 'hash-c', createdAt: iso(T0), expiresAt: 1_950_000_000, finishedAt: iso(T0 + 2),
    });
    // keepItems: never shortens, never creates (no operations item for tx-c here).
    await log.keepItems({ txId: 'tx-c', idempotencyKey: 'key-3' }, 1_920_000_000);
    expect((await log.claimIdempotencyKey('key-3', 'tx-d', 'hash-d', iso(T0 + 3), 1)).expiresAt).toBe(1_950_000_000);
    await log.keepItems({ txId: 'tx-c', idempotencyKey: 'key-3' }, 1_960_000_000);
    expect((await log.claimIdempotencyKey('key-3', 'tx-d', 'hash-d', iso(T0 + 3), 1)).expiresAt).toBe(1_960_000_000);
    expect(await log.getOps('tx-c')).toBeUndefined();
  });

  describe('listing across the shards', () => {
    /** Every page from `cursor` on, `limit` at a time, until `enough` items or the end. */
    const pagesOf = async (limit: number, enough = Number.POSITIVE_INFINITY): Promise<{ items: { txId: string; createdAt: string }[]; cursors: number }> => {
      const items: { txId: string; createdAt: string }[] = [];
      let cursor: string | undefined;
      let cursors = 0;
      do {
        const page = await log.list(limit, cursor);
        expect(page.items.length).toBeLessThanOrEqual(limit);
        items.push(...page.items);
        cursor = page.nextCursor;
        if (cursor) cursors++;
      } while (cursor && items.length < enough);
      return { items, cursors };
    };
    /** Newest first; the same creation time by id, highest first. */
    const newestFirst = (a: { txId: string; createdAt: string }, b: { txId: string; createdAt: string }) =>
      a.createdAt === b.createdAt ? (a.txId < b.txId ? 1 : a.txId > b.txId ? -1 : 0) : a.createdAt < b.createdAt ? 1 : -1;

    it('merges the shards newest first, page by page, with no duplicate and no gap', async () => {
      // In 2100, so these are the newest records of the table; ids spread over every shard, and
      // several share a creation time (ties within a shard and across shards).
      const base = Date.parse('2100-01-01T00:00:00Z');
      const mine: { txId: string; createdAt: string }[] = [];
      for (let i = 0; i < 160; i++) {
        const r = record(`tx-list-${String(i).padStart(4, '0')}`, base + Math.floor(i / 3) * 1000);
        expect(await create(r)).toBe(true);
        mine.push({ txId: r.txId, createdAt: r.createdAt });
      }
      expect(new Set(mine.map((m) => listShard(idSlot(m.txId)))).size).toBe(LIST_SHARDS);
      await log.decideAbort('tx-list-0159', 'client', iso(base + 60_000));
      const expected = [...mine].sort(newestFirst).map((m) => m.txId);

      for (const limit of [1, 3, 7, 40]) {
        const { items } = await pagesOf(limit, 40);
        // Newest first; among equal creation times DynamoDB leaves the order unspecified.
        const top = items.slice(0, 40);
        expect({ limit, ids: [...top].sort(newestFirst).map((i) => i.txId) }).toEqual({ limit, ids: expected.slice(0, 40) });
        expect({ limit, times: top.map((i) => i.createdAt) }).toEqual({ limit, times: [...top.map((i) => i.createdAt)].sort().reverse() });
      }
      const first = await log.list(2);
      expect(first.items[0]).toEqual({ txId: 'tx-list-0159', status: 'ABORTING', createdAt: iso(base + 53_000), updatedAt: iso(base + 60_000), decision: 'ABORT', decisionReason: 'client' });
      expect(first.items[1]).toEqual({ txId: 'tx-list-0158', status: 'PREPARING', createdAt: iso(base + 52_000), updatedAt: iso(base + 52_000) });

      // The whole table, to its end: every record created here once, in order, then no cursor.
      const all = await pagesOf(25);
      expect([...all.items].sort(newestFirst).map((i) => i.txId)).toEqual([...created].map(([txId, createdAt]) => ({ txId, createdAt })).sort(newestFirst).map((i) => i.txId));
      expect(all.items.map((i) => i.createdAt)).toEqual(all.items.map((i) => i.createdAt).sort().reverse());
      expect(all.cursors).toBe(Math.ceil(created.size / 25) - 1);
    });

    it('refuses a cursor it did not hand out, and a limit that is not a positive integer', async () => {
      const shards = Array.from({ length: LIST_SHARDS }, (_, i) => `l${i}`);
      const bad = [
        'not a cursor',
        encodeCursor({ l0: 'start' }),
        encodeCursor(Object.fromEntries(shards.map((s) => [s, 'somewhere']))),
        encodeCursor({ ...Object.fromEntries(shards.map((s) => [s, 'start'])), [`l${LIST_SHARDS}`]: 'start' }),
        Buffer.from('[1,2]').toString('base64url'),
      ];
      for (const cursor of bad) await expect(log.list(2, cursor)).rejects.toThrow(BadCursorError);
      await expect(log.list(0)).rejects.toThrow(/positive integer/);
      await expect(log.list(1.5)).rejects.toThrow(/positive integer/);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Random sequences of operations: both adapters answer each one alike.

type Op =
  | { kind: 'create'; tx: number; atS: number; members: number }
  | { kind: 'yes'; tx: number; p: number; vote: 'YES' | 'READ_ONLY'; atS: number }
  | { kind: 'no'; tx: number; p: number }
  | { kind: 'commit'; tx: number }
  | { kind: 'abort'; tx: number; clockS?: number }
  | { kind: 'ack'; tx: number; p: number; phase: 'COMMIT' | 'ABORT' }
  | { kind: 'finalize'; tx: number; commit: boolean }
  | { kind: 'inDoubt'; tx: number; phase: 'COMMIT' | 'ABORT' }
  | { kind: 'park'; tx: number; phase: 'COMMIT' | 'ABORT'; p: number }
  | { kind: 'claim'; group: number; seen: number }
  | { kind: 'readGroup'; group: number }
  | { kind: 'idem'; key: number; tx: number }
  | { kind: 'get'; tx: number };

/** Members are drawn from these; the last is never a member (a stranger). */
const PEOPLE = ['inventory', 'payment', 'shipping', 'stranger'];
const tx = fc.integer({ min: 0, max: 2 });
const p = fc.integer({ min: 0, max: 3 });
const phase2 = fc.constantFrom<'COMMIT' | 'ABORT'>('COMMIT', 'ABORT');
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('create' as const), tx, atS: fc.integer({ min: 0, max: 3 }), members: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('yes' as const), tx, p, vote: fc.constantFrom<'YES' | 'READ_ONLY'>('YES', 'READ_ONLY'), atS: fc.integer({ min: 0, max: 16 }) }) },
  fc.record({ kind: fc.constant('no' as const), tx, p }),
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('commit' as const), tx }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('abort' as const), tx, clockS: fc.option(fc.integer({ min: 0, max: 16 }), { nil: undefined }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('ack' as const), tx, p, phase: phase2 }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('finalize' as const), tx, commit: fc.boolean() }) },
  fc.record({ kind: fc.constant('inDoubt' as const), tx, phase: phase2 }),
  fc.record({ kind: fc.constant('park' as const), tx, phase: phase2, p }),
  fc.record({ kind: fc.constant('claim' as const), group: fc.integer({ min: 0, max: 1 }), seen: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ kind: fc.constant('readGroup' as const), group: fc.integer({ min: 0, max: 1 }) }),
  fc.record({ kind: fc.constant('idem' as const), key: fc.integer({ min: 0, max: 1 }), tx }),
  fc.record({ kind: fc.constant('get' as const), tx }),
);

/** One operation on one log; `run` names this sequence's ids, groups and times so runs share the table without meeting. */
function perform(log: TxLogPort, run: number, o: Op, step: number): Promise<WriteResult | boolean | unknown> {
  const base = T0 + run * 86_400_000;
  const at = iso(base + step * 1000);
  const id = (i: number) => `prop-${String(run).padStart(4, '0')}-${i}`;
  switch (o.kind) {
    case 'create': {
      const members = PEOPLE.slice(0, o.members);
      const createdMs = base + o.atS * 1000;
      return log.create(record(id(o.tx), createdMs, members), opsOf(id(o.tx), createdMs, members));
    }
    case 'yes':
      return log.recordYes(id(o.tx), PEOPLE[o.p]!, { vote: o.vote, at }, base + o.atS * 1000);
    case 'no':
      return log.recordNo(id(o.tx), PEOPLE[o.p]!, { vote: 'NO', reason: 'no', at }, `${PEOPLE[o.p]} voted NO`);
    case 'commit':
      return log.decideCommit(id(o.tx), at);
    case 'abort':
      return log.decideAbort(id(o.tx), `abort at ${step}`, at, o.clockS === undefined ? undefined : base + o.clockS * 1000);
    case 'ack':
      return log.recordAck(id(o.tx), PEOPLE[o.p]!, { phase: o.phase, at });
    case 'finalize':
      return log.finalize(id(o.tx), o.commit ? commitResult : abortResult, at);
    case 'inDoubt':
      return log.markInDoubt(id(o.tx), o.phase, at);
    case 'park':
      return log.park(id(o.tx), o.phase, PEOPLE[o.p]!);
    case 'claim':
      return log.claimGroup(`g-${run}-10-${o.group}`, o.seen, at);
    case 'readGroup':
      return log.readGroup(`g-${run}-10-${o.group}`);
    case 'idem':
      return log.claimIdempotencyKey(`prop-${run}-key-${o.key}`, id(o.tx), `hash-${o.tx}`, at, 1_900_000_000);
    case 'get':
      return Promise.all([log.get(id(o.tx)), log.getOps(id(o.tx))]);
  }
}

describe('memory and dynalite, on random sequences of operations', () => {
  let dynalite: { log: TxLogPort; stop(): Promise<void> };
  beforeAll(async () => {
    dynalite = await ADAPTERS[1]!.start();
  });
  afterAll(async () => {
    await dynalite?.stop();
  });

  it('answer every operation alike and end with the same records and the same open members', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), async (ops) => {
        run++;
        const memory = new MemoryTxLog();
        for (const [step, o] of ops.entries()) {
          const [m, d] = await Promise.all([perform(memory, run, o, step), perform(dynalite.log, run, o, step)]);
          expect({ step, o, result: m }).toEqual({ step, o, result: d });
        }
        const ids = [0, 1, 2].map((i) => `prop-${String(run).padStart(4, '0')}-${i}`);
        for (const id of ids) {
          expect(await memory.get(id)).toEqual(await dynalite.log.get(id));
          expect(await memory.getOps(id)).toEqual(await dynalite.log.getOps(id));
        }
        const byId = (a: { txId: string }, b: { txId: string }) => (a.txId < b.txId ? -1 : 1);
        expect((await memory.getMany(ids)).sort(byId)).toEqual((await dynalite.log.getMany(ids)).sort(byId));
        // The open index, for every group a record of this run is in (parking groups are shared by runs).
        const groups = new Set(memory.records().flatMap((r) => (r.og ? [r.og] : [])));
        for (const group of groups) {
          const mine = (items: { txId: string; prepareDeadlineAt: number }[]) => items.filter((i) => ids.includes(i.txId)).sort(byId);
          expect(mine((await memory.openMembers(group, 100)).items)).toEqual(mine((await dynalite.log.openMembers(group, 100)).items));
        }
      }),
      { numRuns: 40, seed: 20261127 },
    );
  });
});

describe('the DynamoDB adapter', () => {
  it('answers a failed condition with the item the failed write returned: no second request, and no record when there is none', async () => {
    const aws = await startLocalAws({ tables: ['log'] });
    try {
      const doc = documentClient(aws.dynamodb);
      const sent: string[] = [];
      doc.middlewareStack.add((next, context) => (args) => (sent.push(context.commandName ?? '?'), next(args)), { step: 'initialize', name: 'countCommands' });
      const log = new TxLog(doc, aws.tables.log);
      const r = record('tx-failed-0001');
      expect(await log.create(r, opsOf(r.txId))).toBe(true);
      const first = await log.recordYes(r.txId, 'inventory', yes(T0 + 1), T0 + 1);
      sent.length = 0;
      // A duplicate vote and a stranger's: one UpdateItem each, answered with the record as it is.
      expect(await log.recordYes(r.txId, 'inventory', yes(T0 + 2), T0 + 2)).toEqual({ applied: false, record: first.record });
      expect(await log.recordYes(r.txId, 'shipping', yes(T0 + 2), T0 + 2)).toEqual({ applied: false, record: first.record });
      expect(await log.recordYes('tx-failed-none', 'inventory', yes(T0 + 2), T0 + 2)).toEqual({ applied: false, record: undefined });
      expect(sent).toEqual(['UpdateItemCommand', 'UpdateItemCommand', 'UpdateItemCommand']);
      // A failed put too: a replayed idempotency key answers the first claim from its failed put.
      const claimed = await log.claimIdempotencyKey('key-failed-0001', 'tx-failed-0002', 'hash-a', iso(T0), 1_900_000_000);
      sent.length = 0;
      expect(await log.claimIdempotencyKey('key-failed-0001', 'tx-failed-0003', 'hash-b', iso(T0 + 1), 1_900_000_000)).toEqual(claimed);
      expect(sent).toEqual(['PutItemCommand']);
    } finally {
      await aws.stop();
    }
  });
});
