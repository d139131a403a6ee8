// The coordinator's use cases over the in-memory adapters, with an injected clock and ids, and no
// supervisor running (a recording WorkflowPort): the last vote decides and sends phase two at once,
// the first NO aborts, a redelivered reply re-drives phase two, the last ACK finishes, the deadline
// is absolute, abort() answers by what the log says, and the reply batch knows a participant by the
// queue its message came on. test/unit/supervisor.test.ts runs the supervisors.
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { type ReplyRecord, START_RESERVE_MS, replyBatch } from '../../src/coordinator';
import { type LockService, LockWaitTimeoutError } from '../../src/locks/service';
import type { VoteEntry } from '../../src/core/transaction';
import { MemoryTxLog } from '../../src/memory/log';
import { MemoryParticipantQueues } from '../../src/memory/sqs';
import { memoryLogger } from '../support/fixtures';
import { RecordingWorkflow, SERVICES, T0, iso, memoryStack } from './memory-stack';

const [INVENTORY, PAYMENT, SHIPPING, ORDER] = SERVICES as [string, string, string, string];
const none = { inventory: [], payment: [], shipping: [], order: [] };

describe('start', () => {
  it('writes the operations and the record, makes sure its group is supervised, then sends PREPARE to every member', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body(SERVICES, { prepareSeconds: 5, commitSeconds: 30 }));
    const r = s.record(txId);
    expect(r).toMatchObject({ status: 'PREPARING', req: 4, ok: 0, prepareDeadlineAt: T0 + 5_000, createdAt: iso(T0) });
    expect(JSON.parse((await s.log.getOps(txId))!.participants)).toEqual(s.body().participants);
    // The supervisor sleeps first: until the starter's prepare deadline here (it comes before the bucket's close).
    expect(s.recording.starts).toEqual([{ stateMachineArn: s.stateMachineArn, name: r.og, input: { group: r.og, gen: 0, wakeAt: iso(T0 + 5_000) } }]);
    for (const service of SERVICES) {
      expect(s.take(service)).toEqual([
        { v: 1, type: 'PREPARE', txId, participant: service, operation: { for: service }, deadlineAt: T0 + 5_000, attempt: 1, sentAtMs: T0 },
      ]);
    }
    // Later starts start a group's supervisor once per group from this instance.
    const ids = [];
    for (let i = 0; i < 20; i++) ids.push(await s.start());
    const groups = new Set([r.og, ...ids.map((id) => s.record(id).og)]);
    expect(groups.size).toBeLessThan(21);
    expect(s.recording.starts.map((x) => x.name).sort()).toEqual([...groups].sort());
  });

  it('starts each group\'s supervisor once however many api instances see it: the first to claim the group starts it', async () => {
    const s = memoryStack({ supervise: false });
    // A StartExecution that fails once (a throttle): the claimant tries again with its next transaction.
    let failNext = false;
    const workflow = new (class extends RecordingWorkflow {
      override async start(stateMachineArn: string, name: string, input: unknown): Promise<'started' | 'exists'> {
        if (failNext) {
          failNext = false;
          throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
        }
        return super.start(stateMachineArn, name, input);
      }
    })();
    let ids = 0;
    // One shard: every transaction of a bucket is in one group.
    const instances = [1, 2, 3].map((i) => s.newCoordinator({ workflow, supervision: { shards: 1, bucketSeconds: 10 }, newId: () => `tx-${i}-${String(++ids).padStart(6, '0')}` }));
    const start = async (i: number): Promise<string> => {
      const outcome = await instances[i]!.start(s.body());
      if (outcome.kind !== 'started') throw new Error(`start answered ${JSON.stringify(outcome)}`);
      return outcome.txId;
    };
    failNext = true;
    const first = await start(0);
    const group = s.record(first).og!;
    // Instance 0 won the claim and its start failed; instances 1 and 2 see the claim and start nothing.
    expect(workflow.starts).toEqual([]);
    expect(await s.log.readGroup(group)).toMatchObject({ gen: 0, execution: group });
    const same: string[] = [];
    for (let i = 1; i <= 2; i++) same.push(await start(i));
    expect(same.map((id) => s.record(id).og)).toEqual([group, group]);
    expect(workflow.starts).toEqual([]);
    // The claimant's next transaction of the group starts it; nobody starts it again.
    expect(s.record(await start(0)).og).toBe(group);
    for (let i = 0; i < 3; i++) await start(i);
    expect(workflow.starts.map((x) => x.name)).toEqual([group]);
    // A new bucket: one start, by whichever instance claims it first.
    await s.timers.advanceTo(T0 + 60_000);
    const later = await Promise.all([0, 1, 2, 0, 1, 2].map((i) => start(i)));
    const groups = new Set(later.map((id) => s.record(id).og!));
    expect(groups.size).toBe(1);
    expect(groups.has(group)).toBe(false);
    expect(workflow.starts.map((x) => x.name)).toEqual([group, ...groups]);
  });

  it('deals its starts over the shards in turn: each group key and listing shard takes its share exactly, not a hash\'s chance of it', async () => {
    const s = memoryStack({ supervise: false });
    const coordinator = s.newCoordinator({ supervision: { shards: 8, bucketSeconds: 10 } });
    const ids: string[] = [];
    for (let i = 0; i < 64; i++) {
      const outcome = await coordinator.start(s.body());
      if (outcome.kind !== 'started') throw new Error(outcome.kind);
      ids.push(outcome.txId);
    }
    const count = (keys: string[]) => [...keys.reduce((m, k) => m.set(k, (m.get(k) ?? 0) + 1), new Map<string, number>()).values()];
    // 64 starts in one bucket: 8 apiece in each of the 8 groups, 2 apiece in each of the 32 listing shards.
    expect(count(ids.map((id) => s.record(id).og!))).toEqual(new Array(8).fill(8));
    expect(count(ids.map((id) => s.record(id).lp))).toEqual(new Array(32).fill(2));
    // A replay is not dealt again: it keeps its record's place.
    const replayed = await coordinator.start(s.body(), 'key-deal');
    const again = await coordinator.start(s.body(), 'key-deal');
    expect(again).toMatchObject({ replayed: true });
    if (replayed.kind !== 'started') throw new Error(replayed.kind);
    expect(s.record(replayed.txId).og).toBe(s.record(ids[0]!).og);
  });

  it('answers a retried start with the same idempotency key with the same transaction, re-sending PREPARE only to members still pending', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body(), 'key-1');
    s.takeAll();
    await s.vote(txId, INVENTORY, 'YES');
    const again = await s.coordinator.start(s.body(), 'key-1');
    expect(again).toEqual({ kind: 'started', txId, status: 'PREPARING', replayed: true });
    expect(s.takeAll()).toEqual({ ...none, payment: [`PREPARE:${txId}`], shipping: [`PREPARE:${txId}`], order: [`PREPARE:${txId}`] });
    expect(await s.coordinator.start(s.body([INVENTORY]), 'key-1')).toEqual({ kind: 'idempotency-conflict', txId });
  });
});

describe('the last vote decides', () => {
  it('records each vote in one write and decides COMMIT with the last one, sending COMMIT to the YES voters at once', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start();
    s.takeAll();
    await s.timers.advanceTo(T0 + 100);
    await s.vote(txId, INVENTORY, 'YES');
    await s.vote(txId, PAYMENT, 'READ_ONLY');
    await s.vote(txId, SHIPPING, 'YES');
    expect(s.record(txId)).toMatchObject({ status: 'PREPARING', ok: 3, pending: { order: true } });
    expect(s.takeAll()).toEqual(none);
    await s.timers.advanceTo(T0 + 200);
    await s.vote(txId, ORDER, 'YES');
    expect(s.record(txId)).toMatchObject({ status: 'COMMITTING', decision: 'COMMIT', decidedAt: iso(T0 + 200), ok: 4 });
    // READ_ONLY keeps its read locks until it hears the decision: it is sent COMMIT too.
    expect(s.takeAll()).toEqual({ ...none, inventory: [`COMMIT:${txId}`], payment: [`COMMIT:${txId}`], shipping: [`COMMIT:${txId}`], order: [`COMMIT:${txId}`] });
    for (const p of [INVENTORY, SHIPPING, ORDER]) await s.ack(txId, p, 'COMMIT');
    // Not finished before the READ_ONLY voter acknowledged: until then it may still hold its locks.
    expect(s.record(txId).status).toBe('COMMITTING');
    await s.ack(txId, PAYMENT, 'COMMIT');
    expect(s.record(txId).status).toBe('COMMITTED');
  });

  it('aborts on the first NO and sends ABORT at once to everyone who may have prepared', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start();
    s.takeAll();
    await s.vote(txId, INVENTORY, 'YES');
    await s.vote(txId, PAYMENT, 'NO', 'insufficient funds');
    expect(s.record(txId)).toMatchObject({ status: 'ABORTING', decision: 'ABORT', decisionReason: 'payment voted NO', votes: { payment: { vote: 'NO', reason: 'insufficient funds' } } });
    // The YES voter and the two whose votes are not in (they may have prepared); not the NO voter.
    const aborts = { ...none, inventory: [`ABORT:${txId}`], shipping: [`ABORT:${txId}`], order: [`ABORT:${txId}`] };
    expect(s.takeAll()).toEqual(aborts);
    // A YES after the decision is not recorded; its voter, and everyone else unacknowledged, get ABORT again.
    await s.vote(txId, SHIPPING, 'YES');
    expect(s.record(txId).votes.shipping).toBeUndefined();
    expect(s.takeAll()).toEqual(aborts);
  });

  it('counts a vote from a stranger or a duplicate for nothing', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([INVENTORY, PAYMENT]));
    s.takeAll();
    await s.vote(txId, INVENTORY, 'YES');
    const before = s.record(txId);
    await s.vote(txId, SHIPPING, 'YES');
    await s.vote(txId, SHIPPING, 'NO', 'not even a member');
    await s.vote(txId, INVENTORY, 'YES');
    await s.vote(txId, INVENTORY, 'NO', 'changed its mind');
    await s.ack(txId, SHIPPING, 'COMMIT');
    expect(s.record(txId)).toEqual(before);
    expect(s.takeAll()).toEqual(none);
  });

  it('re-drives phase two to the unacknowledged on a redelivered vote or acknowledgement of a decided transaction', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start();
    s.takeAll();
    for (const p of SERVICES) await s.vote(txId, p, 'YES');
    const all = s.take(INVENTORY).concat(s.take(PAYMENT), s.take(SHIPPING), s.take(ORDER));
    expect(all.map((m) => m.type)).toEqual(['COMMIT', 'COMMIT', 'COMMIT', 'COMMIT']);
    await s.ack(txId, INVENTORY, 'COMMIT');
    expect(s.takeAll()).toEqual(none);
    const resent = { ...none, payment: [`COMMIT:${txId}`], shipping: [`COMMIT:${txId}`], order: [`COMMIT:${txId}`] };
    await s.ack(txId, INVENTORY, 'COMMIT');
    expect(s.takeAll()).toEqual(resent);
    await s.vote(txId, PAYMENT, 'YES');
    expect(s.takeAll()).toEqual(resent);
    expect(s.record(txId)).toMatchObject({ status: 'COMMITTING', acks: { inventory: { phase: 'COMMIT' } } });
  });

  it('finishes with the last acknowledgement: final, out of the open index, with a TTL after the retention', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([INVENTORY, PAYMENT]));
    const group = s.record(txId).og!;
    await s.vote(txId, INVENTORY, 'YES');
    await s.vote(txId, PAYMENT, 'YES');
    await s.ack(txId, INVENTORY, 'COMMIT');
    await s.timers.advanceTo(T0 + 1_500);
    await s.ack(txId, PAYMENT, 'COMMIT');
    const r = s.record(txId);
    expect(r).toMatchObject({ status: 'COMMITTED', finishedAt: iso(T0 + 1_500), expiresAt: Math.floor((T0 + 1_500) / 1000) + 30 * 86_400 });
    expect(r.og).toBeUndefined();
    expect((await s.log.openMembers(group, 10)).items).toEqual([]);
    s.takeAll();
    // A redelivered ACK of a finished transaction sends nothing.
    await s.ack(txId, PAYMENT, 'COMMIT');
    expect(s.takeAll()).toEqual(none);
  });

  it('does not record a vote at the deadline, and the late voter\'s reply aborts the transaction there', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([INVENTORY, PAYMENT], { prepareSeconds: 5, commitSeconds: 30 }));
    s.takeAll();
    await s.timers.advanceTo(T0 + 1_000);
    await s.vote(txId, INVENTORY, 'YES');
    await s.timers.advanceTo(T0 + 5_000);
    await s.vote(txId, PAYMENT, 'YES');
    const r = s.record(txId);
    expect(r.votes.payment).toBeUndefined();
    expect(r).toMatchObject({ status: 'ABORTING', decision: 'ABORT', decisionReason: 'prepare deadline passed', decidedAt: iso(T0 + 5_000), ok: 1 });
    expect(s.takeAll()).toEqual({ ...none, inventory: [`ABORT:${txId}`], payment: [`ABORT:${txId}`] });
  });

  it('answers a YES for a transaction it has no record of with ABORT (presumed abort)', async () => {
    const s = memoryStack({ supervise: false });
    await s.vote('tx-99999999', PAYMENT, 'YES');
    expect(s.take(PAYMENT).map((m) => [m.type, m.txId])).toEqual([['ABORT', 'tx-99999999']]);
    expect(await s.log.get('tx-99999999')).toBeUndefined();
  });
  it('finishes at once a transaction whose only member votes NO', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([PAYMENT]));
    s.takeAll();
    await s.vote(txId, PAYMENT, 'NO', 'insufficient funds');
    expect(s.record(txId)).toMatchObject({ status: 'ABORTED', decision: 'ABORT' });
    expect(s.record(txId).og).toBeUndefined();
    expect(s.takeAll()).toEqual(none);
  });
});

describe('abort()', () => {
  it('decides ABORT while a YES is missing and sends ABORT itself; a second abort finds it decided', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start();
    s.takeAll();
    await s.vote(txId, INVENTORY, 'YES');
    const first = await s.coordinator.abort(txId, 'client asked');
    expect(first).toMatchObject({ kind: 'aborted', decidedNow: true, record: { status: 'ABORTING', decisionReason: 'client asked' } });
    expect(s.takeAll()).toEqual({ inventory: [`ABORT:${txId}`], payment: [`ABORT:${txId}`], shipping: [`ABORT:${txId}`], order: [`ABORT:${txId}`] });
    const second = await s.coordinator.abort(txId, 'again');
    expect(second).toMatchObject({ kind: 'aborted', decidedNow: false, record: { decisionReason: 'client asked' } });
    expect(s.takeAll()).toEqual(none);
  });

  it('answers committed for a committed transaction, and unknown for an id it has no record of', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([INVENTORY]));
    await s.vote(txId, INVENTORY, 'YES');
    expect(await s.coordinator.abort(txId, 'too late')).toMatchObject({ kind: 'committed', record: { decision: 'COMMIT' } });
    expect(await s.coordinator.abort('tx-00009999', 'who?')).toEqual({ kind: 'unknown' });
    expect(await s.log.get('tx-00009999')).toBeUndefined();
  });

  it('answers committed once every YES is recorded even if its decider crashed before deciding, and the record ends COMMITTED', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([INVENTORY, PAYMENT]));
    s.takeAll();
    // The reply function recorded both YES votes and crashed before writing the decision.
    const entry: VoteEntry = { vote: 'YES', at: iso(T0) };
    await s.log.recordYes(txId, INVENTORY, entry, T0);
    await s.log.recordYes(txId, PAYMENT, entry, T0);
    expect(s.record(txId)).toMatchObject({ status: 'PREPARING', ok: 2, req: 2 });
    const answer = await s.coordinator.abort(txId, 'client asked');
    expect(answer).toMatchObject({ kind: 'committed', record: { status: 'COMMITTING', decision: 'COMMIT' } });
    expect(s.takeAll()).toEqual({ ...none, inventory: [`COMMIT:${txId}`], payment: [`COMMIT:${txId}`] });
    await s.ack(txId, INVENTORY, 'COMMIT');
    await s.ack(txId, PAYMENT, 'COMMIT');
    expect(s.record(txId)).toMatchObject({ status: 'COMMITTED', decision: 'COMMIT' });
  });

  it('finishes an abort at once when nobody may hold anything (the only member voted NO)', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([PAYMENT]));
    s.takeAll();
    await s.vote(txId, PAYMENT, 'NO', 'no');
    expect(s.record(txId).status).toBe('ABORTED');
    expect(await s.coordinator.abort(txId, 'late')).toMatchObject({ kind: 'aborted', decidedNow: false, record: { status: 'ABORTED' } });
    expect(s.takeAll()).toEqual(none);
  });

  it('sends ABORT to a READ_ONLY voter and waits for its acknowledgement (it holds read locks until then)', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([INVENTORY, PAYMENT]));
    s.takeAll();
    await s.vote(txId, INVENTORY, 'READ_ONLY');
    await s.vote(txId, PAYMENT, 'NO', 'no');
    expect(s.record(txId).status).toBe('ABORTING');
    expect(s.takeAll()).toEqual({ ...none, inventory: [`ABORT:${txId}`] });
    await s.ack(txId, INVENTORY, 'ABORT');
    expect(s.record(txId).status).toBe('ABORTED');
  });
});

describe('replyBatch', () => {
  const setup = (senders?: Record<string, string[]>) => {
    const s = memoryStack({ supervise: false });
    const owners = Object.fromEntries(SERVICES.map((p) => [s.replyArn(p), p]));
    return { s, authority: { owners, ...(senders ? { senders } : {}) } };
  };
  let seq = 0;
  const rec = (body: unknown, eventSourceARN?: string, senderId?: string): ReplyRecord => ({
    messageId: `m-${++seq}`,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(eventSourceARN === undefined ? {} : { eventSourceARN }),
    ...(senderId === undefined ? {} : { attributes: { SenderId: senderId } }),
  });
  const yes = (txId: string, participant: string) => ({ v: 1, type: 'VOTE', txId, participant, vote: 'YES' });

  it('takes a reply on its sender\'s own queue, and dead-letters one naming another participant, from an unknown queue, or malformed, changing nothing', async () => {
    const { s, authority } = setup();
    const txId = await s.start(s.body([INVENTORY, PAYMENT]));
    s.takeAll();
    const before = s.record(txId);
    const logger = memoryLogger();
    const forged = rec(yes(txId, PAYMENT), s.replyArn(INVENTORY));
    const unknownQueue = rec(yes(txId, PAYMENT), 'arn:aws:sqs:us-east-1:000000000000:someone-else');
    const noQueue = rec(yes(txId, PAYMENT));
    const notJson = rec('{"v":1,', s.replyArn(PAYMENT));
    const badShape = rec({ v: 1, type: 'VOTE', txId, participant: PAYMENT, vote: 'MAYBE' }, s.replyArn(PAYMENT));
    const out = await replyBatch(s.coordinator, s.queues, authority, [forged, unknownQueue, noQueue, notJson, badShape], logger);
    expect(out).toEqual({ batchItemFailures: [] });
    expect(s.record(txId)).toEqual(before);
    expect(s.takeAll()).toEqual(none);
    const refused = s.takeRefused();
    expect(refused).toHaveLength(5);
    expect(refused[0]).toEqual({ body: forged.body, owner: INVENTORY, reason: `the reply names payment but came on inventory's reply queue` });
    expect(refused[1]).toMatchObject({ body: unknownQueue.body, owner: 'unknown', reason: expect.stringContaining('belongs to no participant') });
    expect(refused[2]).toMatchObject({ owner: 'unknown', reason: expect.stringContaining('(none)') });
    expect(refused[3]).toMatchObject({ body: '{"v":1,', owner: PAYMENT, reason: 'malformed reply message: body is not JSON' });
    expect(refused[4]).toMatchObject({ owner: PAYMENT, reason: expect.stringMatching(/^malformed reply message: vote: /) });
    expect(logger.lines.filter((l) => l.level === 'warn')).toHaveLength(5);

    // The same vote on the voter's own queue counts.
    await replyBatch(s.coordinator, s.queues, authority, [rec(yes(txId, PAYMENT), s.replyArn(PAYMENT))], logger);
    expect(s.record(txId).votes.payment).toMatchObject({ vote: 'YES' });
    expect(s.takeRefused()).toEqual([]);
  });

  it('checks the SQS sender id when the authority names the participant\'s principals', async () => {
    const { s, authority } = setup({ payment: ['AROAPAYMENT'] });
    const txId = await s.start(s.body([INVENTORY, PAYMENT]));
    const logger = memoryLogger();
    await replyBatch(s.coordinator, s.queues, authority, [rec(yes(txId, PAYMENT), s.replyArn(PAYMENT), 'AROAINVENTORY:session')], logger);
    expect(s.record(txId).votes.payment).toBeUndefined();
    expect(s.takeRefused()).toEqual([expect.objectContaining({ owner: PAYMENT, reason: expect.stringContaining('was sent by AROAINVENTORY:session, not by payment') })]);
    await replyBatch(s.coordinator, s.queues, authority, [rec(yes(txId, PAYMENT), s.replyArn(PAYMENT))], logger);
    expect(s.record(txId).votes.payment).toBeUndefined();
    expect(s.takeRefused()).toHaveLength(1);
    await replyBatch(s.coordinator, s.queues, authority, [rec(yes(txId, PAYMENT), s.replyArn(PAYMENT), 'AROAPAYMENT:i-123')], logger);
    expect(s.record(txId).votes.payment).toMatchObject({ vote: 'YES' });
    // A participant without named principals is known by its queue alone.
    await replyBatch(s.coordinator, s.queues, authority, [rec(yes(txId, INVENTORY), s.replyArn(INVENTORY))], logger);
    expect(s.record(txId)).toMatchObject({ status: 'COMMITTING' });
  });

  /** A spy on the memory queues' sends (restored after the test): each send's messages as `type:participant:txId`. */
  const spySends = () => {
    const spy = vi.spyOn(MemoryParticipantQueues.prototype, 'send');
    onTestFinished(() => spy.mockRestore());
    return { spy, sends: () => spy.mock.calls.map(([messages]) => messages.map((m) => `${m.type}:${m.participant}:${m.txId}`)) };
  };

  it('sends the phase two of every transaction one batch decides in one send, and waits for the replies that decide nothing', async () => {
    const { s, authority } = setup();
    const decided = [await s.start(), await s.start(), await s.start()];
    const open = await s.start();
    for (const txId of decided) for (const p of [PAYMENT, SHIPPING, ORDER]) await s.vote(txId, p, 'YES');
    s.takeAll();
    const { sends } = spySends();
    const batch = [...decided, open].map((txId) => rec(yes(txId, INVENTORY), s.replyArn(INVENTORY)));
    const out = await replyBatch(s.coordinator, s.queues, authority, batch, memoryLogger());
    expect(out).toEqual({ batchItemFailures: [] });
    // One send of 3 x 4 messages (the SQS adapter puts each participant's 3 in one SendMessageBatch), not 3 sends.
    expect(sends()).toHaveLength(1);
    expect([...sends()[0]!].sort()).toEqual(SERVICES.flatMap((p) => decided.map((txId) => `COMMIT:${p}:${txId}`)).sort());
    for (const txId of decided) expect(s.record(txId).status).toBe('COMMITTING');
    expect(s.record(open)).toMatchObject({ status: 'PREPARING', ok: 1 });
    const taken = s.takeAll();
    for (const p of SERVICES) expect([...taken[p]!].sort()).toEqual(decided.map((txId) => `COMMIT:${txId}`).sort());
  });

  it('reports every reply whose phase two was in a failed send; their redelivery sends it', async () => {
    const { s, authority } = setup();
    const decided = [await s.start(), await s.start()];
    for (const txId of decided) for (const p of [PAYMENT, SHIPPING, ORDER]) await s.vote(txId, p, 'YES');
    s.takeAll();
    const { spy, sends } = spySends();
    // Thrown at once, not a rejected promise: the outbox must still fail every reply that waited.
    spy.mockImplementationOnce(() => {
      throw new Error('SQS is down');
    });
    const batch = decided.map((txId) => rec(yes(txId, INVENTORY), s.replyArn(INVENTORY)));
    const out = await replyBatch(s.coordinator, s.queues, authority, batch, memoryLogger());
    expect(out.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(batch.map((r) => r.messageId).sort());
    expect(sends()).toHaveLength(1);
    // The decision is written; nothing reached the participants.
    for (const txId of decided) expect(s.record(txId).status).toBe('COMMITTING');
    expect(s.takeAll()).toEqual(none);
    // SQS redelivers the batch: the duplicate votes re-drive phase two, again in one send.
    expect(await replyBatch(s.coordinator, s.queues, authority, batch, memoryLogger())).toEqual({ batchItemFailures: [] });
    expect(sends()).toHaveLength(2);
    const taken = s.takeAll();
    for (const p of SERVICES) expect([...taken[p]!].sort()).toEqual(decided.map((txId) => `COMMIT:${txId}`).sort());
  });

  it('reports a reply that failed for redelivery, and takes the rest of the batch', async () => {
    class FailingLog extends MemoryTxLog {
      override recordYes(...args: Parameters<MemoryTxLog['recordYes']>) {
        return args[0] === 'tx-00000001' ? Promise.reject(new Error('throttled')) : super.recordYes(...args);
      }
    }
    const s = memoryStack({ supervise: false, log: new FailingLog() });
    const owners = Object.fromEntries(SERVICES.map((p) => [s.replyArn(p), p]));
    const failing = await s.start(s.body([INVENTORY]));
    const fine = await s.start(s.body([INVENTORY]));
    const logger = memoryLogger();
    const bad = rec(yes(failing, INVENTORY), s.replyArn(INVENTORY));
    const out = await replyBatch(s.coordinator, s.queues, { owners }, [bad, rec(yes(fine, INVENTORY), s.replyArn(INVENTORY))], logger);
    expect(out).toEqual({ batchItemFailures: [{ itemIdentifier: bad.messageId }] });
    expect(s.record(fine).status).toBe('COMMITTING');
    expect(s.record(failing).status).toBe('PREPARING');
    expect(logger.lines).toContainEqual(expect.objectContaining({ level: 'error', message: 'reply failed' }));
    expect(s.takeRefused()).toEqual([]);
  });
});

describe('the idempotency window', () => {
  it('keeps the key past the record when the transaction finishes, and answers a replay after the record is forgotten with 410 (gone), writing nothing', async () => {
    const s = memoryStack({ supervise: false });
    const started = await s.coordinator.start(s.body([INVENTORY]), 'key-w');
    if (started.kind !== 'started') throw new Error(JSON.stringify(started));
    const { txId } = started;
    const claimed = await s.log.claimIdempotencyKey('key-w', 'tx-other', 'x', iso(T0), 1);
    // Claimed with retention (30 days here) + 30 days from the start.
    expect(claimed).toMatchObject({ txId, expiresAt: Math.floor(T0 / 1000) + 60 * 86_400 });
    expect(claimed.finishedAt).toBeUndefined();
    await s.timers.advanceTo(T0 + 1_000);
    await s.vote(txId, INVENTORY, 'YES');
    await s.timers.advanceTo(T0 + 2_000);
    await s.ack(txId, INVENTORY, 'COMMIT');
    const record = s.record(txId);
    expect(record.status).toBe('COMMITTED');
    const key = await s.log.claimIdempotencyKey('key-w', 'tx-other', 'x', iso(T0), 1);
    expect(key).toMatchObject({ txId, finishedAt: iso(T0 + 2_000), expiresAt: record.expiresAt! + 30 * 86_400 });
    expect(key.expiresAt!).toBeGreaterThan(record.expiresAt!);
    s.takeAll();
    // While the record is kept, a replay is the same transaction, and writes nothing (not even an
    // operations item that TTL took a little before the record).
    s.log.forget(`${txId}#ops`);
    expect(await s.coordinator.start(s.body([INVENTORY]), 'key-w')).toEqual({ kind: 'started', txId, status: 'COMMITTED', replayed: true });
    expect(await s.log.getOps(txId)).toBeUndefined();
    // TTL removes the record (the key, kept longer, stays): gone, and nothing is written.
    s.log.forget(txId);
    expect(await s.coordinator.start(s.body([INVENTORY]), 'key-w')).toEqual({ kind: 'gone', txId });
    expect(s.log.peek(txId)).toBeUndefined();
    expect(await s.log.getOps(txId)).toBeUndefined();
    expect(s.takeAll()).toEqual(none);
    // Another body under the same key is still a conflict.
    expect(await s.coordinator.start(s.body([PAYMENT]), 'key-w')).toEqual({ kind: 'idempotency-conflict', txId });
  });

  it('creates the record of a key claimed by a start that crashed before writing it (never finished: not gone)', async () => {
    const s = memoryStack({ supervise: false });
    const first = await s.coordinator.start(s.body([INVENTORY]), 'key-c');
    if (first.kind !== 'started') throw new Error(JSON.stringify(first));
    // As if the start had crashed right after its claim.
    s.log.forget(first.txId);
    s.log.forget(`${first.txId}#ops`);
    s.takeAll();
    expect(await s.coordinator.start(s.body([INVENTORY]), 'key-c')).toEqual({ kind: 'started', txId: first.txId, status: 'PREPARING', replayed: true });
    expect(s.takeAll()).toEqual({ ...none, inventory: [`PREPARE:${first.txId}`] });
  });
});

describe('release()', () => {
  const decidedWithSilent = async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([INVENTORY, PAYMENT, SHIPPING]));
    await s.vote(txId, INVENTORY, 'YES');
    await s.vote(txId, PAYMENT, 'NO', 'no');
    s.takeAll();
    return { s, txId };
  };

  it('records who released a participant from the wait, why and when, and finishes once nobody else is owed', async () => {
    const { s, txId } = await decidedWithSilent();
    await s.ack(txId, INVENTORY, 'ABORT');
    expect(s.record(txId).status).toBe('ABORTING'); // shipping never voted: it may have prepared
    await s.timers.advanceTo(T0 + 5_000);
    const out = await s.coordinator.release(txId, SHIPPING, 'ops-anna', 'shipping-v1 retired for good');
    expect(out).toMatchObject({ kind: 'released', record: { status: 'ABORTED', releases: { shipping: { operator: 'ops-anna', reason: 'shipping-v1 retired for good', at: iso(T0 + 5_000) } } } });
    expect(s.takeAll()).toEqual(none);
  });

  it('keeps waiting for the others after a release', async () => {
    const { s, txId } = await decidedWithSilent();
    expect(await s.coordinator.release(txId, SHIPPING, 'ops', 'retired')).toMatchObject({ kind: 'released', record: { status: 'ABORTING' } });
    // Re-driving phase two now skips the released participant.
    await s.vote(txId, INVENTORY, 'YES');
    expect(s.takeAll()).toEqual({ ...none, inventory: [`ABORT:${txId}`] });
  });

  it('adds a second release to the first, and finishes once both are released', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([INVENTORY, PAYMENT, SHIPPING, ORDER]));
    await s.vote(txId, PAYMENT, 'NO', 'no');
    s.takeAll();
    expect(await s.coordinator.release(txId, SHIPPING, 'ops', 'retired')).toMatchObject({ kind: 'released', record: { status: 'ABORTING' } });
    await s.ack(txId, INVENTORY, 'ABORT');
    const out = await s.coordinator.release(txId, ORDER, 'ops', 'retired too');
    expect(out).toMatchObject({ kind: 'released', record: { status: 'ABORTED', releases: { shipping: { reason: 'retired' }, order: { reason: 'retired too' } } } });
    expect(await s.coordinator.release(txId, ORDER, 'ops', 'again')).toMatchObject({ kind: 'refused' });
  });

  it('refuses an unknown transaction, a stranger, an undecided transaction, and a participant owed nothing', async () => {
    const { s, txId } = await decidedWithSilent();
    expect(await s.coordinator.release('tx-nobody-1', SHIPPING, 'ops', 'r')).toEqual({ kind: 'unknown' });
    expect(await s.coordinator.release(txId, ORDER, 'ops', 'r')).toEqual({ kind: 'not-member' });
    expect(await s.coordinator.release(txId, PAYMENT, 'ops', 'r')).toMatchObject({ kind: 'refused', why: 'payment is owed no acknowledgement (it voted NO)' });
    await s.ack(txId, INVENTORY, 'ABORT');
    expect(await s.coordinator.release(txId, INVENTORY, 'ops', 'r')).toMatchObject({ kind: 'refused', why: 'inventory acknowledged ABORT' });
    await s.coordinator.release(txId, SHIPPING, 'ops', 'r');
    expect(await s.coordinator.release(txId, SHIPPING, 'ops', 'r')).toMatchObject({ kind: 'refused', why: `transaction ${txId} has finished` });
    const open = await s.start();
    expect(await s.coordinator.release(open, SHIPPING, 'ops', 'r')).toMatchObject({ kind: 'refused', why: `transaction ${open} is not decided yet` });
  });
});

describe('declared-resource lock waits', () => {
  /** A lock service whose every wait runs out at once, recording how long each was allowed. */
  const timingOut = (waits: number[]) =>
    ({
      async acquire(input: { resource: string; waitMs: number }) {
        waits.push(input.waitMs);
        throw new LockWaitTimeoutError(input.resource, ['tx-other'], input.waitMs);
      },
      async releaseAll() {
        return [];
      },
    }) as unknown as LockService;
  const declaring = (s: ReturnType<typeof memoryStack>) => ({
    participants: [{ service: INVENTORY, operation: {}, resources: ['sku-1', 'sku-2', 'sku-3'] }],
    timeouts: { prepareSeconds: 60, commitSeconds: 30 },
  });

  it("end within the invocation's remaining time, less what the abort after them needs", async () => {
    const waits: number[] = [];
    const s = memoryStack({ supervise: false, locks: timingOut(waits) });
    const out = await s.coordinator.start(declaring(s), undefined, () => 4_000);
    expect(waits).toEqual([4_000 - START_RESERVE_MS]);
    expect(out).toMatchObject({ kind: 'started', status: 'ABORTING' });
    expect(s.record((out as { txId: string }).txId)).toMatchObject({ decision: 'ABORT', decisionReason: 'could not lock sku-1 in time' });
    const none: number[] = [];
    const t = memoryStack({ supervise: false, locks: timingOut(none) });
    await t.coordinator.start(declaring(t), undefined, () => 1_000);
    expect(none).toEqual([0]);
  });
});

describe('the start writes', () => {
  it('put the operations item and the record side by side: the record does not wait for the operations', async () => {
    const calls: string[] = [];
    let releaseOps: () => void = () => undefined;
    class HeldOpsLog extends MemoryTxLog {
      protected override async put(write: Parameters<MemoryTxLog['put']>[0]) {
        const pk = String(write.item.pk);
        calls.push(`put ${pk.endsWith('#ops') ? 'ops' : 'record'}`);
        if (pk.endsWith('#ops')) await new Promise<void>((resolve) => (releaseOps = resolve));
        return super.put(write);
      }
    }
    const s = memoryStack({ supervise: false, log: new HeldOpsLog() });
    const started = s.start(s.body([INVENTORY, PAYMENT]));
    await expect.poll(() => calls).toEqual(['put ops', 'put record']);
    releaseOps();
    const txId = await started;
    expect(s.record(txId).status).toBe('PREPARING');
    expect(JSON.parse((await s.log.getOps(txId))!.participants)).toEqual(s.body([INVENTORY, PAYMENT]).participants);
  });
});
