// Recovery on the embedded stack: the sweeper (lambdas/sweeper.ts) checks groups, not transactions.
// A group with open members whose supervisor is gone (stopped, or lost as a restarted local stack
// loses every execution) gets a new one, and the group's transactions end: a decided one's phase
// two is re-sent (and a participant that stays silent is marked in doubt), an undecided one is
// aborted at its deadline. Two sweeps at once start one supervisor; a live supervisor is left alone.
// The schedule is slowed to an hour here so that each test runs the sweeper itself, when it
// chooses. `silent` has queues and no consumer: the test answers for it on its own reply queue.
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { Workflow, executionArn } from '../../src/aws/workflow';
import { supervisorName } from '../../src/core/log-transitions';
import { IN_DOUBT_AFTER_COMMIT_TIMEOUTS, type TxRecord } from '../../src/core/transaction';
import { sweep } from '../../src/recovery';
import { ensureSupervisor } from '../../src/supervisor';
import { startHarness, type Harness } from '../e2e/harness';

let h: Harness;
let log: TxLog;
/** The sweeper function, imported once the stack has set the environment its module reads. */
let sweeperHandler: (typeof import('../../lambdas/sweeper'))['handler'];

beforeAll(async () => {
  h = await startHarness({ context: { participants: ['inventory', 'payment', 'shipping', 'order', 'silent'], sweeperLocalRateSeconds: 3600 } });
  log = new TxLog(documentClient(h.stack.dynamodb), h.stack.outputs.txTable);
  sweeperHandler = (await import('../../lambdas/sweeper')).handler;
});

afterAll(async () => {
  await h?.stop();
});

async function until(what: string, check: (r: TxRecord) => boolean, txId: string, timeoutMs = 15_000): Promise<TxRecord> {
  return vi.waitFor(
    async () => {
      const record = await log.get(txId);
      if (!record || !check(record)) throw new Error(`${what} not reached within ${timeoutMs} ms: ${JSON.stringify(record)}`);
      return record;
    },
    { timeout: timeoutMs, interval: 50 },
  );
}

async function startWithSilent(sku: string, timeouts: { prepareSeconds: number; commitSeconds: number }): Promise<string> {
  const res = await h.request('POST', '/transactions', {
    participants: [
      { service: 'inventory', operation: { items: [{ sku, quantity: 2 }] } },
      { service: 'silent', operation: {} },
    ],
    timeouts,
  });
  expect(res.status).toBe(202);
  return res.body.txId as string;
}

const arn = () => h.stack.outputs.stateMachineArn;
const reply = (body: Record<string, unknown>) => h.sendRaw(h.stack.outputs.replyQueueUrls.silent!, { v: 1, participant: 'silent', ...body });
const status = (execution: string) => h.stack.stepFunctions.describeExecution(executionArn(arn(), execution)).status;
const executionsOf = (group: string) =>
  h.stack.stepFunctions
    .listExecutions({ stateMachineArn: arn() })
    .filter((e) => e.name === group || e.name.startsWith(`${group}-g`))
    .map((e) => `${e.name}:${e.status}`)
    .sort();
const outcomeOf = (report: Awaited<ReturnType<typeof sweep>>, group: string) => report.outcomes.filter((o) => o.group === group);
const sweepNow = () => sweep({ log, workflow: new Workflow() }, { stateMachineArn: arn() });

describe('the recovery sweeper', () => {
  it('gives a group whose supervisor was stopped a new generation, which re-sends COMMIT and marks the silent participant in doubt until it acknowledges', async () => {
    const txId = await startWithSilent('sku-40', { prepareSeconds: 30, commitSeconds: 1 });
    await until('inventory voted', (r) => r.votes.inventory !== undefined, txId);
    await reply({ type: 'VOTE', txId, vote: 'YES' });
    const committing = await until('inventory acknowledged COMMIT', (r) => r.status === 'COMMITTING' && r.acks.inventory !== undefined, txId);
    const group = committing.og!;
    expect(status(group)).toBe('RUNNING');
    h.stack.stepFunctions.stopExecution(executionArn(arn(), group), 'Test.Kill', 'killed by the test');

    const result = await sweeperHandler({});
    expect(result).toMatchObject({ failed: 0 });
    expect(result.groups).toBeGreaterThanOrEqual(1);
    // The next generation was claimed in the log and started.
    expect(await log.readGroup(group)).toMatchObject({ group, gen: 1, execution: supervisorName(group, 1) });
    expect(executionsOf(group)).toEqual([`${group}-g1:RUNNING`, `${group}:ABORTED`]);

    // It re-sends COMMIT to silent on the schedule; past IN_DOUBT_AFTER_COMMIT_TIMEOUTS commit timeouts it marks silent in doubt.
    const marked = await until('silent in doubt', (r) => r.inDoubtSince !== undefined, txId, 30_000);
    expect(Date.parse(marked.inDoubtSince!) - Date.parse(marked.decidedAt!)).toBeGreaterThanOrEqual(IN_DOUBT_AFTER_COMMIT_TIMEOUTS * 1000);
    const doubted = await h.request('GET', `/transactions/${txId}`);
    expect(doubted.body.inDoubt).toEqual(['silent']);
    expect(doubted.body.participants.find((p: { service: string }) => p.service === 'silent').inDoubtSince).toBe(marked.inDoubtSince);
    const commits = await h.stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: h.stack.outputs.participantQueues.silent, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    expect((commits.Messages ?? []).map((m) => JSON.parse(m.Body!) as { type: string; txId: string }).filter((m) => m.txId === txId && m.type === 'COMMIT').length).toBeGreaterThanOrEqual(1);
    // A copy of the unacknowledged COMMIT is in silent's DLQ with the reason, once.
    const dlqUrl = Object.entries(h.stack.outputs.queues).find(([name]) => /silent-requests-dlq$/.test(name))?.[1];
    expect(dlqUrl).toBeDefined();
    const copies = await h.stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: dlqUrl, MaxNumberOfMessages: 10, MessageAttributeNames: ['All'], WaitTimeSeconds: 1 }));
    const mine = (copies.Messages ?? []).filter((m) => (JSON.parse(m.Body ?? '{}') as { txId?: string }).txId === txId);
    expect(mine).toHaveLength(1);
    expect(JSON.parse(mine[0]!.Body!)).toMatchObject({ type: 'COMMIT', participant: 'silent' });
    expect(mine[0]!.MessageAttributes?.['dtc-reason']?.StringValue).toMatch(/^in doubt: no COMMIT acknowledgement after \d+ sends/);
    expect(mine[0]!.MessageAttributes?.['dtc-source']?.StringValue).toBe('coordinator');

    await reply({ type: 'ACK', txId, phase: 'COMMIT' });
    const ended = await h.waitForEnd(txId, 15_000);
    expect(ended.status).toBe('COMMITTED');
    expect(ended.inDoubt).toBeUndefined();
    // The log keeps when it was in doubt; nothing marks it twice.
    expect((await log.get(txId))!.inDoubtSince).toEqual(marked.inDoubtSince);
    expect(await h.demo.shop.getInventory('sku-40')).toMatchObject({ held: 0, sold: 2 });
  });

  it('starts one supervisor when three sweeps run at once', async () => {
    const txId = await startWithSilent('sku-42', { prepareSeconds: 30, commitSeconds: 2 });
    const voted = await until('inventory voted', (r) => r.votes.inventory !== undefined, txId);
    const group = voted.og!;
    // Whatever supervises the group now (an earlier test may have replaced its supervisor) is stopped.
    const current = await ensureSupervisor({ log, workflow: new Workflow() }, arn(), group);
    expect(status(current)).toBe('RUNNING');
    h.stack.stepFunctions.stopExecution(executionArn(arn(), current), 'Test.Kill', 'killed by the test');

    const reports = await Promise.all([sweepNow(), sweepNow(), sweepNow()]);
    const mine = reports.flatMap((r) => outcomeOf(r, group));
    const next = supervisorName(group, ((await log.readGroup(group))?.gen ?? 0));
    expect(next).not.toBe(current);
    expect(mine).toEqual([0, 1, 2].map(() => ({ group, open: 1, kind: 'supervised', execution: next })));
    expect(executionsOf(group).filter((e) => e.endsWith(':RUNNING'))).toEqual([`${next}:RUNNING`]);

    // The transaction goes on under the new supervisor: silent votes NO now.
    await reply({ type: 'VOTE', txId, vote: 'NO', reason: 'test' });
    expect((await h.waitForEnd(txId, 15_000)).status).toBe('ABORTED');
  });

  it('leaves a group whose supervisor is running alone', async () => {
    const txId = await startWithSilent('sku-43', { prepareSeconds: 30, commitSeconds: 2 });
    const voted = await until('inventory voted', (r) => r.votes.inventory !== undefined, txId);
    const group = voted.og!;
    const running = await ensureSupervisor({ log, workflow: new Workflow() }, arn(), group);
    expect(status(running)).toBe('RUNNING');
    const startedBefore = h.stack.stepFunctions.stats().executionsStarted;
    const report = await sweepNow();
    expect(outcomeOf(report, group)).toEqual([{ group, open: 1, kind: 'supervised', execution: running }]);
    expect(h.stack.stepFunctions.stats().executionsStarted).toBe(startedBefore);
    await reply({ type: 'VOTE', txId, vote: 'NO' });
    expect((await h.waitForEnd(txId, 15_000)).status).toBe('ABORTED');
  });

  it('gives a group whose supervisor was lost with every execution (a restarted stack) a new one, which aborts at the deadline and releases what was held', async () => {
    const txId = await startWithSilent('sku-41', { prepareSeconds: 2, commitSeconds: 2 });
    const voted = await until('inventory voted', (r) => r.votes.inventory?.vote === 'YES', txId);
    const group = voted.og!;
    expect(h.stack.stepFunctions.forgetExecutions()).toBeGreaterThanOrEqual(1);
    expect(executionsOf(group)).toEqual([]);
    // Nobody supervises it now: past its deadline it is still undecided.
    await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(voted.prepareDeadlineAt + 500), { timeout: 10_000, interval: 50 });
    expect((await log.get(txId))?.status).toBe('PREPARING');

    const report = await sweepNow();
    // The execution named after the group no longer exists, so that name is free: generation 0 again.
    expect(outcomeOf(report, group)).toEqual([{ group, open: 1, kind: 'supervised', execution: group }]);
    const aborted = await until('aborted by the new supervisor', (r) => r.status !== 'PREPARING', txId);
    expect(aborted).toMatchObject({ status: 'ABORTING', decision: 'ABORT', decisionReason: 'prepare deadline passed' });

    // silent never voted, so it may have prepared: the abort phase waits for its acknowledgement too.
    await until('inventory acknowledged the abort', (r) => r.acks.inventory?.phase === 'ABORT', txId);
    await reply({ type: 'ACK', txId, phase: 'ABORT' });
    const ended = await h.waitForEnd(txId, 15_000);
    expect(ended.status).toBe('ABORTED');
    expect(ended.participants.find((p) => p.service === 'inventory')).toMatchObject({ vote: 'YES', ack: 'ABORT' });
    expect(await h.demo.shop.getInventory('sku-41')).toEqual({ sku: 'sku-41', available: 1000, held: 0, sold: 0 });
    // One supervisor for the group, the one the sweeper started (it ends once the group closes, 30 s on).
    expect(executionsOf(group)).toHaveLength(1);
    expect(executionsOf(group)[0]).toMatch(new RegExp(`^${group}:(RUNNING|SUCCEEDED)$`));
  });
});
