// End to end on the embedded stack: who may speak for a transaction, and when; what supervision does
// when a decider or a supervisor crashed, or a participant was down. `silent` and `mute` have queues
// and no consumer: the test speaks for them, each on its own reply queue, as a hostile or broken
// participant would. One supervision shard, so that a test's transactions share a group; the sweeper
// is slowed to an hour so that no supervisor comes back unless a test brings it back (each test
// ends with a sweep that gives every group with open members a supervisor again).
import { type Message, ReceiveMessageCommand, DeleteMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { Workflow, executionArn } from '../../src/aws/workflow';
import type { ParticipantMessage } from '../../src/core/messages';
import type { TxRecord } from '../../src/core/transaction';
import { ensureSupervisor } from '../../src/supervisor';
import { orderBody, startHarness, type Harness } from './harness';

let h: Harness;
let log: TxLog;
/** The sweeper function, imported once the stack has set the environment its module reads. */
let sweeperHandler: (typeof import('../../lambdas/sweeper'))['handler'];

beforeAll(async () => {
  h = await startHarness({
    context: { participants: ['inventory', 'payment', 'shipping', 'order', 'silent', 'mute'], sweeperLocalRateSeconds: 3600, supervisionShards: 1, supervisionBucketSeconds: 2 },
  });
  log = new TxLog(documentClient(h.stack.dynamodb), h.stack.outputs.txTable);
  sweeperHandler = (await import('../../lambdas/sweeper')).handler;
});

afterEach(async () => {
  // Whatever a test stopped, every group with open members has a supervisor again.
  expect((await sweeperHandler({})).failed).toBe(0);
});

afterAll(async () => {
  await h?.stop();
});

const arn = () => h.stack.outputs.stateMachineArn;
/** A reply on `queueOwner`'s own reply queue (the message may name someone else: that is the point of some tests). */
const replyOn = (queueOwner: string, body: Record<string, unknown>) => h.sendRaw(h.stack.outputs.replyQueueUrls[queueOwner]!, { v: 1, participant: queueOwner, ...body });

async function until(what: string, txId: string, check: (r: TxRecord) => boolean, timeoutMs = 20_000): Promise<TxRecord> {
  return vi.waitFor(
    async () => {
      const record = await log.get(txId);
      if (!record || !check(record)) throw new Error(`${what}: ${JSON.stringify(record)}`);
      return record;
    },
    { timeout: timeoutMs, interval: 50 },
  );
}

async function start(participants: { service: string; operation?: unknown }[], timeouts: { prepareSeconds: number; commitSeconds: number }, headers: Record<string, string> = {}): Promise<string> {
  const res = await h.request('POST', '/transactions', { participants, timeouts }, headers);
  expect(res.status).toBe(202);
  return res.body.txId as string;
}

/** Stop whichever execution supervises `group` now (a crash of the supervisor). */
async function stopSupervisor(group: string): Promise<string> {
  const current = (await log.readGroup(group))?.execution ?? group;
  h.stack.stepFunctions.stopExecution(executionArn(arn(), current), 'Test.Crash', 'the test stopped the supervisor');
  return current;
}

/** What reached `service`'s request queue, read and deleted. */
async function received(service: string, waitSeconds = 0): Promise<ParticipantMessage[]> {
  const out = await h.stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: h.stack.outputs.participantQueues[service], MaxNumberOfMessages: 10, WaitTimeSeconds: waitSeconds }));
  for (const m of out.Messages ?? []) await h.stack.sqs.send(new DeleteMessageCommand({ QueueUrl: h.stack.outputs.participantQueues[service], ReceiptHandle: m.ReceiptHandle }));
  return (out.Messages ?? []).map((m) => JSON.parse(m.Body!) as ParticipantMessage);
}

/** Wait until `service` receives a message matching `match` (others are read and dropped). */
async function receivedMatching(service: string, match: (m: ParticipantMessage) => boolean, timeoutMs = 20_000): Promise<ParticipantMessage> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const found = (await received(service, 1)).find(match);
    if (found) return found;
  }
  throw new Error(`${service} received nothing matching within ${timeoutMs} ms`);
}

async function deadLetteredReplies(): Promise<Message[]> {
  const out = await h.stack.sqs.send(
    new ReceiveMessageCommand({ QueueUrl: h.stack.outputs.queues['dtc-replies-dlq'], MaxNumberOfMessages: 10, MessageAttributeNames: ['All'], WaitTimeSeconds: 1, VisibilityTimeout: 0 }),
  );
  return out.Messages ?? [];
}

describe('only a participant can speak for itself', () => {
  it('a YES forged in payment\'s name on silent\'s own reply queue changes nothing, and is dead-lettered with the reason', async () => {
    const before = await h.demo.shop.getAccount('acct-90');
    // The attack from issue 10: an order payment must refuse (amount over the balance); the hostile
    // member votes YES in payment's name, and its own YES, right after the start.
    const txId = await start([{ service: 'payment', operation: { account: 'acct-90', amount: 100_000_000 } }, { service: 'silent', operation: {} }], { prepareSeconds: 30, commitSeconds: 30 });
    await replyOn('silent', { type: 'VOTE', txId, participant: 'payment', vote: 'YES' });
    await replyOn('silent', { type: 'VOTE', txId, vote: 'YES' });

    const decided = await until('decided', txId, (r) => r.status !== 'PREPARING');
    expect(decided).toMatchObject({ status: 'ABORTING', decision: 'ABORT' });
    expect(decided.decisionReason).toBe('payment voted NO');
    expect(decided.votes.payment?.reason).toMatch(/^insufficient funds in acct-90/);
    expect(decided.votes.payment?.vote).toBe('NO');
    await replyOn('silent', { type: 'ACK', txId, phase: 'ABORT' });
    expect((await h.waitForEnd(txId)).status).toBe('ABORTED');
    expect(await h.demo.shop.getAccount('acct-90')).toEqual(before);

    // The forged message is in the reply DLQ as it came, with the reason and the queue's owner.
    const forged = await vi.waitFor(
      async () => {
        const mine = (await deadLetteredReplies()).find((m) => (JSON.parse(m.Body!) as { txId?: string }).txId === txId);
        if (!mine) throw new Error('not dead-lettered yet');
        return mine;
      },
      { timeout: 15_000, interval: 100 },
    );
    expect(JSON.parse(forged.Body!)).toEqual({ v: 1, type: 'VOTE', txId, participant: 'payment', vote: 'YES' });
    expect(forged.MessageAttributes?.['dtc-reason']?.StringValue).toBe("the reply names payment but came on silent's reply queue");
    expect(forged.MessageAttributes?.['dtc-participant']?.StringValue).toBe('silent');
    expect(forged.MessageAttributes?.['dtc-source']?.StringValue).toBe('reply');
  });

  it('a vote from a service that is not a member changes nothing', async () => {
    const txId = await start([{ service: 'inventory', operation: { items: [{ sku: 'sku-91', quantity: 1 }] } }, { service: 'silent', operation: {} }], { prepareSeconds: 30, commitSeconds: 30 });
    const voted = await until('inventory voted', txId, (r) => r.votes.inventory !== undefined);
    // order is a participant of the stack, speaking on its own queue, but not a member of this transaction.
    await replyOn('order', { type: 'VOTE', txId, vote: 'YES' });
    await replyOn('order', { type: 'VOTE', txId, vote: 'NO', reason: 'not mine to refuse' });
    await replyOn('order', { type: 'ACK', txId, phase: 'COMMIT' });
    await vi.waitFor(async () => expect((await h.queueDepths())['dtc-order-replies']).toBe(0), { timeout: 15_000, interval: 50 });
    expect(await log.get(txId)).toEqual(voted);

    await replyOn('silent', { type: 'VOTE', txId, vote: 'YES' });
    await until('committing', txId, (r) => r.status === 'COMMITTING');
    await replyOn('silent', { type: 'ACK', txId, phase: 'COMMIT' });
    const ended = await h.waitForEnd(txId);
    expect(ended.status).toBe('COMMITTED');
    expect(ended.participants.map((p) => p.service)).toEqual(['inventory', 'silent']);
    expect((await log.get(txId))?.votes.order).toBeUndefined();
  });
});

describe('absolute deadlines', () => {
  it('a vote after the deadline is not recorded, and the reply path aborts the transaction then (its supervisor is gone)', async () => {
    const txId = await start([{ service: 'inventory', operation: { items: [{ sku: 'sku-92', quantity: 1 }] } }, { service: 'silent', operation: {} }], { prepareSeconds: 2, commitSeconds: 30 });
    const voted = await until('inventory voted', txId, (r) => r.votes.inventory !== undefined);
    await stopSupervisor(voted.og!);
    await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(voted.prepareDeadlineAt + 200), { timeout: 10_000, interval: 50 });
    // Nobody aborted it at its deadline: it is still undecided when silent's late YES arrives.
    expect((await log.get(txId))?.status).toBe('PREPARING');
    await replyOn('silent', { type: 'VOTE', txId, vote: 'YES' });

    const decided = await until('decided', txId, (r) => r.status !== 'PREPARING');
    expect(decided).toMatchObject({ status: 'ABORTING', decision: 'ABORT', decisionReason: 'prepare deadline passed', ok: 1, req: 2 });
    expect(decided.votes.silent).toBeUndefined();
    expect(Date.parse(decided.decidedAt!)).toBeGreaterThanOrEqual(decided.prepareDeadlineAt);
    // silent's YES was not recorded, so it may hold a prepared state: it is told to abort.
    expect(await receivedMatching('silent', (m) => m.txId === txId && m.type === 'ABORT')).toMatchObject({ participant: 'silent' });
    await replyOn('silent', { type: 'ACK', txId, phase: 'ABORT' });
    expect((await h.waitForEnd(txId)).status).toBe('ABORTED');
    expect(await h.demo.shop.getInventory('sku-92')).toEqual({ sku: 'sku-92', available: 1000, held: 0, sold: 0 });
  });
});

describe('once every YES is recorded, COMMIT is the only outcome', () => {
  // Simulated: the reply path's vote writes are made through the log adapter (TxLog.recordYes, the
  // same conditional write the reply function makes), and the decision write that follows them in
  // the reply function is never made, as if the function crashed in between. The group's
  // supervisor is stopped first, so that nothing else decides meanwhile.
  async function everyYesInNoDecision(): Promise<TxRecord> {
    const txId = await start([{ service: 'silent' }, { service: 'mute' }], { prepareSeconds: 30, commitSeconds: 30 });
    const record = (await log.get(txId))!;
    await stopSupervisor(record.og!);
    const at = new Date().toISOString();
    for (const p of ['silent', 'mute']) expect((await log.recordYes(txId, p, { vote: 'YES', at }, Date.now())).applied).toBe(true);
    const votes = (await log.get(txId))!;
    expect(votes).toMatchObject({ status: 'PREPARING', ok: 2, req: 2 });
    return votes;
  }

  async function acknowledgeCommits(txId: string): Promise<void> {
    for (const p of ['silent', 'mute']) {
      await receivedMatching(p, (m) => m.txId === txId && m.type === 'COMMIT');
      await replyOn(p, { type: 'ACK', txId, phase: 'COMMIT' });
    }
    expect((await h.waitForEnd(txId)).status).toBe('COMMITTED');
  }

  it('an abort request gets 409 and finishes the transaction as COMMIT, its decider having crashed before deciding', async () => {
    const { txId } = await everyYesInNoDecision();
    const res = await h.request('POST', `/transactions/${txId}/abort`, { reason: 'changed my mind' });
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ error: { code: 'AlreadyCommitted' }, decision: 'COMMIT', transaction: { txId, status: 'COMMITTING', decision: { outcome: 'COMMIT' } } });
    await acknowledgeCommits(txId);
  });

  it('a supervisor that finds every YES recorded commits', async () => {
    const { txId, og } = await everyYesInNoDecision();
    const report = await sweeperHandler({});
    expect(report.failed).toBe(0);
    expect((await log.readGroup(og!))?.gen).toBeGreaterThanOrEqual(1);
    const decided = await until('decided by the new supervisor', txId, (r) => r.status !== 'PREPARING');
    expect(decided).toMatchObject({ status: 'COMMITTING', decision: 'COMMIT', decisionReason: 'every participant voted YES' });
    await acknowledgeCommits(txId);
  });
});

describe('supervision', () => {
  it('a supervisor start retried after a crash changes no decision', async () => {
    const opts = { prepareSeconds: 30, commitSeconds: 2 };
    const inventory = (sku: string) => ({ service: 'inventory', operation: { items: [{ sku, quantity: 1 }] } });
    const key = `retry-${Date.now()}`;
    const committing = await start([inventory('sku-93'), { service: 'silent' }], opts, { 'Idempotency-Key': key });
    const aborted = await start([inventory('sku-94'), { service: 'silent' }], opts);
    await until('inventory voted', committing, (r) => r.votes.inventory !== undefined);
    await until('inventory voted', aborted, (r) => r.votes.inventory !== undefined);
    await replyOn('silent', { type: 'VOTE', txId: committing, vote: 'YES' });
    await replyOn('silent', { type: 'VOTE', txId: aborted, vote: 'NO', reason: 'no' });
    const c0 = await until('COMMIT decided', committing, (r) => r.status === 'COMMITTING');
    const a0 = await until('ABORT decided', aborted, (r) => r.decision === 'ABORT');
    const group = c0.og!;
    const workflow = new Workflow();

    // A start retried while the supervisor runs (a new API instance: no memory of starting it) is that supervisor.
    const startedBefore = h.stack.stepFunctions.stats().executionsStarted;
    const running = (await log.readGroup(group))?.execution ?? group;
    expect(await ensureSupervisor({ log, workflow }, arn(), group)).toBe(running);
    const replay = await h.request('POST', '/transactions', { participants: [inventory('sku-93'), { service: 'silent' }], timeouts: opts }, { 'Idempotency-Key': key });
    expect(replay).toMatchObject({ status: 202, body: { txId: committing, status: 'COMMITTING' } });
    expect(h.stack.stepFunctions.stats().executionsStarted).toBe(startedBefore);

    // The supervisor crashes; starts retried at once make one new generation.
    await stopSupervisor(group);
    const next = await Promise.all([1, 2, 3].map(() => ensureSupervisor({ log, workflow }, arn(), group)));
    expect(new Set(next).size).toBe(1);
    expect(next[0]).not.toBe(running);
    // The new supervisor's first run re-sends COMMIT to silent, which still owes its acknowledgement.
    const resent = await receivedMatching('silent', (m) => m.txId === committing && m.type === 'COMMIT' && m.attempt > 1);
    expect(resent.participant).toBe('silent');
    const c1 = (await log.get(committing))!;
    const a1 = (await log.get(aborted))!;
    expect([c1.decision, c1.decidedAt, c1.decisionReason]).toEqual([c0.decision, c0.decidedAt, c0.decisionReason]);
    expect([a1.decision, a1.decidedAt, a1.decisionReason]).toEqual([a0.decision, a0.decidedAt, a0.decisionReason]);
    // The replay sent no PREPARE: nobody's vote was pending.
    expect((await received('silent')).filter((m) => m.type === 'PREPARE')).toEqual([]);

    await replyOn('silent', { type: 'ACK', txId: committing, phase: 'COMMIT' });
    expect((await h.waitForEnd(committing)).status).toBe('COMMITTED');
    expect((await h.waitForEnd(aborted)).status).toBe('ABORTED');
  });

  it('re-sends phase two to a participant that was down, until it acknowledges, and the group ends once empty', async () => {
    const opts = { prepareSeconds: 30, commitSeconds: 1 };
    const txIds = [await start([{ service: 'silent' }, { service: 'mute' }], opts), await start([{ service: 'silent' }, { service: 'mute' }], opts)];
    const group = (await log.get(txIds[0]!))!.og!;
    expect((await log.get(txIds[1]!))!.og).toBe(group);
    for (const txId of txIds) for (const p of ['silent', 'mute']) await replyOn(p, { type: 'VOTE', txId, vote: 'YES' });
    for (const txId of txIds) await until('committing', txId, (r) => r.status === 'COMMITTING');
    // mute acknowledges; silent is down: what reaches it meanwhile is lost (the test reads and drops
    // it, as a consumer that crashed with its messages would), so only a re-send can reach it later.
    for (const txId of txIds) await replyOn('mute', { type: 'ACK', txId, phase: 'COMMIT' });
    const downUntil = Date.now() + 2_500;
    let dropped = 0;
    while (Date.now() < downUntil) dropped += (await received('silent', 1)).filter((m) => m.type === 'COMMIT').length;
    expect(dropped).toBeGreaterThanOrEqual(2);

    // silent is back: the supervisor's next re-sends reach it, and it acknowledges each.
    const open = new Set(txIds);
    const deadline = Date.now() + 30_000;
    while (open.size > 0 && Date.now() < deadline) {
      for (const m of await received('silent', 1)) {
        if (m.type !== 'COMMIT' || !open.has(m.txId)) continue;
        expect(m.attempt).toBeGreaterThan(1);
        await replyOn('silent', { type: 'ACK', txId: m.txId, phase: 'COMMIT' });
        open.delete(m.txId);
      }
    }
    expect([...open]).toEqual([]);
    for (const txId of txIds) expect((await h.waitForEnd(txId)).status).toBe('COMMITTED');
    expect((await log.openMembers(group, 10)).items).toEqual([]);
    // The group's supervisor ends once the group is empty and closed (its bucket, plus a grace period).
    const supervisor = (await log.readGroup(group))?.execution ?? group;
    await vi.waitFor(() => expect(h.stack.stepFunctions.describeExecution(executionArn(arn(), supervisor)).status).toBe('SUCCEEDED'), { timeout: 60_000, interval: 250 });
  }, 120_000);
});

describe('an order through the shop, for reference', () => {
  it('commits with the four services on their own reply queues', async () => {
    const { body } = orderBody({ items: [{ sku: 'sku-95', quantity: 1 }], account: 'acct-95', amount: 100 });
    const res = await h.request('POST', '/transactions', body, { Prefer: 'wait=10' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ decision: { outcome: 'COMMIT' } });
    expect((await h.waitForEnd(res.body.txId)).status).toBe('COMMITTED');
  });
});
