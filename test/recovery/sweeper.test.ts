// Recovery on the embedded stack: executions that die mid-transaction are found by the sweeper
// (lambdas/sweeper.ts) and resumed from the recorded phase; PREPARING past its deadline is aborted
// first; two sweeps at once start one recovery. The schedule is slowed to an hour here so that
// each test runs the sweeper itself, at the moment it chooses. `silent` has a queue and no
// consumer: the test answers for it on the reply queue.
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { handler as sweeperHandler } from '../../lambdas/sweeper';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { Workflow, executionArn } from '../../src/aws/workflow';
import { IN_DOUBT_AFTER_ATTEMPTS, type TxRecord } from '../../src/core/transaction';
import { sweep } from '../../src/recovery';
import { startHarness, type Harness } from '../e2e/harness';

let h: Harness;
let log: TxLog;

beforeAll(async () => {
  h = await startHarness({
    context: { participants: ['inventory', 'payment', 'shipping', 'order', 'silent'], recoveryStaleSeconds: 1, sweeperLocalRateSeconds: 3600 },
  });
  log = new TxLog(documentClient(h.stack.dynamodb), h.stack.outputs.txTable);
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

/** The sweeper as scheduled, run until it has resumed something (the transaction the test stopped goes stale 1 s after its last write). */
async function sweepUntilResumed(): Promise<Awaited<ReturnType<typeof sweeperHandler>>> {
  return vi.waitFor(
    async () => {
      const result = await sweeperHandler({});
      expect(result.resumed).toBeGreaterThanOrEqual(1);
      return result;
    },
    { timeout: 10_000, interval: 100 },
  );
}

/** A sweep on a clock `aheadMs` ahead, so that what was written just now is already stale. */
const sweepAhead = (aheadMs: number) => sweep({ log, workflow: new Workflow(), now: () => Date.now() + aheadMs }, { stateMachineArn: h.stack.outputs.stateMachineArn, staleMs: 1_000 });

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

const reply = (body: Record<string, unknown>) => h.sendRaw(h.stack.outputs.replyQueueUrl, { v: 1, participant: 'silent', ...body });
const stop = (name: string) => h.stack.stepFunctions.stopExecution(executionArn(h.stack.outputs.stateMachineArn, name), 'Test.Kill', 'killed by the test');

describe('the recovery sweeper', () => {
  it('resumes a transaction stopped in phase two, which shows the silent participant in doubt until it acknowledges', async () => {
    const txId = await startWithSilent('sku-40', { prepareSeconds: 30, commitSeconds: 1 });
    await until('inventory voted', (r) => r.votes.inventory !== undefined, txId);
    await reply({ type: 'VOTE', txId, vote: 'YES' });
    await until('inventory acknowledged COMMIT', (r) => r.status === 'COMMITTING' && r.acks.inventory !== undefined, txId);
    stop(txId);

    const result = await sweepUntilResumed();
    expect(result.resumed).toBeGreaterThanOrEqual(1);
    const resumed = await log.get(txId);
    expect(resumed).toMatchObject({ executionName: `${txId}-r1`, recoveries: 1, status: 'COMMITTING' });
    expect(h.stack.stepFunctions.describeExecution(executionArn(h.stack.outputs.stateMachineArn, `${txId}-r1`)).status).toBe('RUNNING');

    // Phase two goes on re-sending COMMIT to silent; past the bound the API says it is in doubt.
    await until('commit re-sent past the in-doubt bound', (r) => (r.commitAttempts ?? 0) >= IN_DOUBT_AFTER_ATTEMPTS, txId, 30_000);
    const doubted = await h.request('GET', `/transactions/${txId}`);
    expect(doubted.body.inDoubt).toEqual(['silent']);
    // Logged once, and a copy of the unacknowledged COMMIT is in silent's DLQ with the reason.
    const marked = await until('in doubt logged', (r) => r.inDoubtSince?.silent !== undefined, txId);
    expect(Object.keys(marked.inDoubtSince!)).toEqual(['silent']);
    expect(doubted.body.participants.find((p: { service: string }) => p.service === 'silent').inDoubtSince).toBe(marked.inDoubtSince!.silent);
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

  it('aborts a PREPARING transaction whose execution is gone once its deadline passed, and releases what was held', async () => {
    const txId = await startWithSilent('sku-41', { prepareSeconds: 2, commitSeconds: 2 });
    await until('inventory voted', (r) => r.votes.inventory?.vote === 'YES', txId);
    stop(txId);
    const record = await log.get(txId);
    // The sweeper must first see it past its prepare deadline (and stale): a condition on the clock.
    await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(record!.prepareDeadlineAt + 1_100), { timeout: 10_000, interval: 50 });

    const result = await sweepUntilResumed();
    expect(result.resumed).toBeGreaterThanOrEqual(1);
    const aborted = await log.get(txId);
    expect(aborted).toMatchObject({ status: 'ABORTING', decision: 'ABORT', executionName: `${txId}-r1` });
    expect(aborted!.decisionReason).toMatch(/^recovery: execution aborted and the prepare deadline passed/);

    // silent never voted, so it may have prepared: the abort phase waits for its acknowledgement too.
    await until('inventory acknowledged the abort', (r) => r.acks.inventory?.phase === 'ABORT', txId);
    await reply({ type: 'ACK', txId, phase: 'ABORT' });
    const ended = await h.waitForEnd(txId, 15_000);
    expect(ended.status).toBe('ABORTED');
    expect(ended.participants.find((p) => p.service === 'inventory')).toMatchObject({ vote: 'YES', ack: 'ABORT' });
    expect(await h.demo.shop.getInventory('sku-41')).toEqual({ sku: 'sku-41', available: 1000, held: 0, sold: 0 });
  });

  it('starts one recovery execution when two sweeps run at once', async () => {
    const txId = await startWithSilent('sku-42', { prepareSeconds: 30, commitSeconds: 2 });
    await until('inventory voted', (r) => r.votes.inventory !== undefined, txId);
    stop(txId);

    const reports = await Promise.all([sweepAhead(1_100), sweepAhead(1_100), sweepAhead(1_100)]);
    const mine = reports.flatMap((r) => r.outcomes).filter((o) => o.txId === txId);
    expect(mine.filter((o) => o.kind === 'resumed')).toEqual([{ txId, kind: 'resumed', executionName: `${txId}-r1`, from: 'PREPARE', abortedFirst: false }]);
    expect(mine.filter((o) => o.kind === 'failed')).toEqual([]);
    const names = h.stack.stepFunctions
      .listExecutions({ stateMachineArn: h.stack.outputs.stateMachineArn })
      .map((e) => e.name)
      .filter((n) => n.startsWith(txId));
    expect(names.sort()).toEqual([txId, `${txId}-r1`]);

    // The resumed Prepare finishes the transaction: silent votes NO now.
    await reply({ type: 'VOTE', txId, vote: 'NO', reason: 'test' });
    expect((await h.waitForEnd(txId, 15_000)).status).toBe('ABORTED');
  });

  it('leaves transactions whose execution is alive alone', async () => {
    const txId = await startWithSilent('sku-43', { prepareSeconds: 30, commitSeconds: 2 });
    await until('inventory voted', (r) => r.votes.inventory !== undefined, txId);
    const report = await sweepAhead(1_100);
    expect(report.outcomes.filter((o) => o.txId === txId)).toEqual([{ txId, kind: 'skipped', why: 'its execution is running' }]);
    await reply({ type: 'VOTE', txId, vote: 'NO' });
    expect((await h.waitForEnd(txId, 15_000)).status).toBe('ABORTED');
  });
});
