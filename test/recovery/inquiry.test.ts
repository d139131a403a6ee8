// Participants in doubt ask for the decision (src/participant/inquiry.ts, decisions.ts), a restart
// scan finds what a crash left half done, and messages that will not succeed reach the DLQ with
// their reason. On loopback DynamoDB and SQS; the coordinator is a stub or a log table.
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import type { ReplyMessage } from '../../src/core/messages';
import type { DecisionAnswer } from '../../src/core/recovery';
import { BarrierStore } from '../../src/participant/barrier-store';
import { startConsumer } from '../../src/participant/consumer';
import { apiDecisions, type DecisionSource } from '../../src/participant/decisions';
import { defineParticipant } from '../../src/participant/define';
import { createRunner, documentClient } from '../../src/participant/runner';
import { type LocalAws, startLocalAws } from '../support/aws';
import { memoryLogger, message, newTxId } from '../support/fixtures';

function recorder() {
  const calls: string[] = [];
  const participant = defineParticipant({
    service: 'tester',
    operation: z.object({ fail: z.boolean().optional() }).optional(),
    async prepare({ txId }) {
      calls.push(`prepare:${txId}`);
      return { vote: 'YES' };
    },
    async commit({ txId, operation }) {
      if (operation?.fail) throw new Error('commit keeps failing');
      calls.push(`commit:${txId}`);
      return [];
    },
    async abort({ txId }) {
      calls.push(`abort:${txId}`);
      return [];
    },
  });
  return { participant, calls };
}

/** A decision source the test sets, counting questions. */
function stubDecisions(): DecisionSource & { answers: Map<string, DecisionAnswer>; asked: string[] } {
  const answers = new Map<string, DecisionAnswer>();
  const asked: string[] = [];
  return {
    answers,
    asked,
    async read(txId) {
      asked.push(txId);
      return answers.get(txId) ?? 'PENDING';
    },
  };
}

let local: LocalAws;
let table: string;
let replyQueueUrl: string;

beforeAll(async () => {
  local = await startLocalAws({ sqs: true, tables: ['log'], queues: ['dtc-inventory-replies'] });
  table = await local.participantTable('inquirer');
  replyQueueUrl = local.queues['dtc-inventory-replies']!;
});
afterAll(async () => {
  await local.stop();
});

describe('a participant in doubt', () => {
  it('asks after the prepare deadline plus the bound, waits while undecided, and applies COMMIT through the barrier once', async () => {
    const { participant, calls } = recorder();
    const decisions = stubDecisions();
    let now = 1_000_000;
    const runner = createRunner({ participant, replyQueueUrl, table, sqs: local.sqs, dynamodb: local.dynamodb, decisions, inquireAfterMs: 5_000, nowMs: () => now });
    const txId = newTxId('doubt');
    await runner.handle({ ...message('PREPARE', txId, 'tester', {}), deadlineAt: now + 2_000 });
    expect(runner.inDoubt!.watched).toBe(1);
    await local.replies(replyQueueUrl);

    now += 6_000; // deadline + 4 s: not yet
    expect(await runner.inDoubt!.inquireDue()).toMatchObject({ asked: 0 });
    now += 1_000;
    expect(await runner.inDoubt!.inquireDue()).toMatchObject({ asked: 1, pending: 1 });
    expect(runner.inDoubt!.watched).toBe(1);

    decisions.answers.set(txId, 'COMMIT');
    now += 120_000; // past any backoff
    expect(await runner.inDoubt!.inquireDue()).toMatchObject({ asked: 1, applied: 1 });
    expect(runner.inDoubt!.watched).toBe(0);
    expect(calls.filter((c) => c === `commit:${txId}`)).toHaveLength(1);
    expect(await local.replies(replyQueueUrl)).toEqual([{ v: 1, type: 'ACK', txId, participant: 'tester', phase: 'COMMIT' }]);

    // The real COMMIT arrives late: the barrier answers with the ACK and runs nothing again.
    await runner.handle(message('COMMIT', txId, 'tester'));
    expect(calls.filter((c) => c === `commit:${txId}`)).toHaveLength(1);
  });

  it('applies ABORT when the coordinator has no record (presumed abort), asking the decision route', async () => {
    const { participant, calls } = recorder();
    // The coordinator's decision route, as a participant sees it: the outcome of the records it has, 404 otherwise.
    const statuses = new Map<string, string>();
    const coordinator = (async (url: string) => {
      const id = decodeURIComponent(/\/transactions\/([^/]+)\/decision$/.exec(String(url))![1]!);
      const status = statuses.get(id);
      return status === undefined
        ? new Response(JSON.stringify({ error: { code: 'NotFound', message: `no transaction ${id}` } }), { status: 404 })
        : new Response(JSON.stringify({ txId: id, status, createdAt: new Date(0).toISOString() }), { status: 200 });
    }) as unknown as typeof fetch;
    const decisions = apiDecisions({ baseUrl: 'http://coordinator.test', fetch: coordinator });
    const runner = createRunner({ participant, replyQueueUrl, table, sqs: local.sqs, dynamodb: local.dynamodb, decisions });
    const txId = newTxId('nolog');
    await runner.handle(message('PREPARE', txId, 'tester', {}));
    await local.replies(replyQueueUrl);
    expect(await runner.inDoubt!.inquire(txId)).toBe('ABORT');
    expect(calls).toEqual([`prepare:${txId}`, `abort:${txId}`]);
    expect(await local.replies(replyQueueUrl)).toEqual([{ v: 1, type: 'ACK', txId, participant: 'tester', phase: 'ABORT' }]);

    for (const [status, answer] of [['PREPARING', 'PENDING'], ['COMMITTING', 'COMMIT'], ['COMMITTED', 'COMMIT'], ['ABORTING', 'ABORT'], ['ABORTED', 'ABORT']] as const) {
      const id = newTxId('logged');
      statuses.set(id, status);
      expect([status, await decisions.read(id)]).toEqual([status, answer]);
    }
  });

  it('reads the API: 404 for the transaction is presumed abort, any other 404 or error is not an answer', async () => {
    const respond = (status: number, body: unknown) => async () => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
    const read = (fetchImpl: () => Promise<Response>) => apiDecisions({ baseUrl: 'http://coordinator.test/v1/', fetch: fetchImpl as typeof fetch }).read('tx-00000042');
    expect(await read(respond(404, { error: { code: 'NotFound', message: 'no transaction tx-00000042' } }))).toBe('ABORT');
    const createdAt = '2026-11-30T00:00:00.000Z';
    expect(await read(respond(200, { txId: 'tx-00000042', status: 'COMMITTING', createdAt }))).toBe('COMMIT');
    expect(await read(respond(200, { txId: 'tx-00000042', status: 'PREPARING', createdAt }))).toBe('PENDING');
    await expect(read(respond(404, { message: 'Not Found' }))).rejects.toThrow(/not the coordinator's/);
    await expect(read(respond(500, { error: { code: 'InternalError' } }))).rejects.toThrow(/answered 500/);
    await expect(read(respond(200, { status: 'WHATEVER' }))).rejects.toThrow(/answered 200/);
  });

  it('after a restart, watches what it voted YES on or was preparing', async () => {
    const { participant, calls } = recorder();
    const decisions = stubDecisions();
    const before = createRunner({ participant, replyQueueUrl, table, sqs: local.sqs, dynamodb: local.dynamodb, decisions });
    const voted = newTxId('voted');
    await before.handle(message('PREPARE', voted, 'tester', {}));
    // A prepare run that died (its claim is someone else's); a finished abort needs nothing.
    const store = new BarrierStore(documentClient(local.dynamodb), table, 'tester');
    const preparing = newTxId('preparing');
    await store.write(preparing, 0, { state: 'PREPARING', operation: {}, claim: { runId: 'dead-run', untilMs: Date.now() + 60_000 } }, Date.now());
    const aborted = newTxId('aborted');
    await store.write(aborted, 0, { state: 'ABORTED', prepareStarted: true, operation: {} }, Date.now());
    await local.replies(replyQueueUrl);

    const after = createRunner({ participant, replyQueueUrl, table, sqs: local.sqs, dynamodb: local.dynamodb, decisions, inquireAfterMs: 0 });
    const found = await store.scanUnsettled();
    expect(found.map((b) => b.txId)).toEqual(expect.arrayContaining([voted, preparing]));
    expect(found.map((b) => b.txId)).not.toContain(aborted);
    const recovered = await after.inDoubt!.recoverStored();
    expect(recovered.watched).toBe(found.length);

    decisions.answers.set(voted, 'COMMIT');
    decisions.answers.set(preparing, 'ABORT');
    const report = await after.inDoubt!.inquireDue(1_000);
    expect(report.failed).toBe(0);
    expect(calls).toContain(`commit:${voted}`);
    // Its prepare never wrote anything, so there is nothing for user abort to release.
    expect(calls).not.toContain(`abort:${preparing}`);
    expect((await store.read(voted)).record.state).toBe('COMMITTED');
    expect((await store.read(preparing)).record).toMatchObject({ state: 'ABORTED', prepareStarted: true });
  });

  it('as a consumer, settles a YES vote whose COMMIT never arrives', async () => {
    const { participant, calls } = recorder();
    const decisions = stubDecisions();
    const queueUrl = await local.scratchQueue('inquiry-requests');
    const consumer = startConsumer({
      participant,
      queueUrl,
      replyQueueUrl,
      table,
      sqs: local.sqs,
      dynamodb: local.dynamodb,
      decisions,
      inquireAfterMs: 100,
      inquiryIntervalMs: 50,
      waitTimeSeconds: 1,
      logger: memoryLogger(),
    });
    try {
      const txId = newTxId('consumer');
      decisions.answers.set(txId, 'COMMIT');
      await local.send(queueUrl, { ...message('PREPARE', txId, 'tester', {}), deadlineAt: Date.now() + 1_000 });
      await vi.waitFor(() => expect(calls).toContain(`commit:${txId}`), { timeout: 10_000, interval: 50 });
      // (Its restart scan also re-ran the cut-short aborts earlier tests left in this table.)
      expect(calls.filter((c) => c.endsWith(txId))).toEqual([`prepare:${txId}`, `commit:${txId}`]);
      expect(decisions.asked).toContain(txId);
    } finally {
      await consumer.stop();
    }
  });
});

describe('messages that will not succeed', () => {
  it('reach the dead-letter queue with their reason', async () => {
    const { participant } = recorder();
    const dlq = (await local.sqs.send(new CreateQueueCommand({ QueueName: 'tester-dlq' }))).QueueUrl!;
    const dlqArn = (await local.sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlq, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
    const queueUrl = (
      await local.sqs.send(
        new CreateQueueCommand({ QueueName: 'tester-requests', Attributes: { RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 2 }) } }),
      )
    ).QueueUrl!;
    const logger = memoryLogger();
    const consumer = startConsumer({ participant, queueUrl, replyQueueUrl, table, sqs: local.sqs, dynamodb: local.dynamodb, visibilityTimeoutSeconds: 1, waitTimeSeconds: 1, logger });
    const failing = newTxId('failing');
    try {
      await local.send(queueUrl, '{"v":1,"type":"GOSSIP"}');
      // Prepared, then a COMMIT whose handler throws every time: dead-lettered on its last receive.
      await local.send(queueUrl, message('PREPARE', failing, 'tester', { fail: true }));
      // The COMMIT only once the YES vote is out (the barrier holds the prepare).
      const replies: ReplyMessage[] = [];
      await vi.waitFor(
        async () => {
          replies.push(...(await local.replies(replyQueueUrl)));
          expect(replies).toContainEqual(expect.objectContaining({ type: 'VOTE', txId: failing, vote: 'YES' }));
        },
        { timeout: 10_000, interval: 50 },
      );
      await local.send(queueUrl, message('COMMIT', failing, 'tester'));
      const received: { body: string; reason: string; count: string }[] = [];
      const until = Date.now() + 15_000;
      while (received.length < 2 && Date.now() < until) {
        const out = await local.sqs.send(new ReceiveMessageCommand({ QueueUrl: dlq, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: ['All'] }));
        for (const m of out.Messages ?? []) {
          received.push({ body: m.Body ?? '', reason: m.MessageAttributes?.['dtc-reason']?.StringValue ?? '', count: m.MessageAttributes?.['dtc-receive-count']?.StringValue ?? '' });
        }
      }
      expect(received.map((r) => r.reason).sort()).toEqual([
        expect.stringMatching(/^failed 2 times, last: Error: commit keeps failing/),
        expect.stringMatching(/^malformed: /),
      ]);
      expect(received.find((r) => r.reason.startsWith('failed'))?.count).toBe('2');
      // The copy reaches the DLQ just before the original is deleted: wait for the delete.
      await expect.poll(() => local.queueDepth(queueUrl), { timeout: 5_000 }).toBe(0);
      expect(logger.lines.some((l) => l.level === 'error' && l.message.includes('moved to the dead-letter queue'))).toBe(true);
    } finally {
      await consumer.stop();
    }
  });
});
