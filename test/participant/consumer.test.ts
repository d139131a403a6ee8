import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { startConsumer } from '../../src/participant/consumer';
import { defineParticipant } from '../../src/participant/define';
import { sqsHandler } from '../../src/participant/lambda';
import { type LocalAws, startLocalAws } from '../support/aws';
import { memoryLogger, message, newTxId, pause } from '../support/fixtures';

function counting() {
  const prepares: string[] = [];
  const commits: string[] = [];
  const participant = defineParticipant({
    service: 'tester',
    operation: z.object({ slowMs: z.number().int().nonnegative() }),
    async prepare({ txId, operation }) {
      prepares.push(txId);
      await pause(operation.slowMs);
      return { vote: 'YES' };
    },
    async commit({ txId }) {
      commits.push(txId);
      return [];
    },
    abort: async () => [],
  });
  return { participant, prepares, commits };
}

let local: LocalAws;
let table: string;

beforeAll(async () => {
  local = await startLocalAws({ dynamodb: true, sqs: true });
  table = await local.participantTable('tester');
});
afterAll(async () => {
  await local.stop();
});

describe('startConsumer', () => {
  it('processes PREPARE and COMMIT from a real queue, deletes them, and stops promptly mid long-poll', async () => {
    const queueUrl = await local.scratchQueue('requests-1');
    const replyQueueUrl = await local.scratchQueue('replies-1');
    const t = counting();
    const receives = local.watchReceives(queueUrl);
    const consumer = startConsumer({ participant: t.participant, queueUrl, replyQueueUrl, table, sqs: local.sqs, dynamodb: local.dynamodb, logger: memoryLogger() });
    const txIds = [newTxId(), newTxId(), newTxId()];
    for (const txId of txIds) await local.send(queueUrl, message('PREPARE', txId, 'tester', { slowMs: 0 }));
    const votes: string[] = [];
    await vi.waitFor(async () => expect(votes.push(...(await local.drain(replyQueueUrl)))).toBeGreaterThanOrEqual(3), { timeout: 10_000, interval: 50 });
    const commitIds: string[] = [];
    for (const txId of txIds) commitIds.push(await local.send(queueUrl, message('COMMIT', txId, 'tester')));
    const acks: string[] = [];
    await vi.waitFor(async () => expect(acks.push(...(await local.drain(replyQueueUrl)))).toBeGreaterThanOrEqual(3), { timeout: 10_000, interval: 50 });

    // Once the consumer is parked in a 20 s long poll begun after the COMMITs came in, stop must abort it, not wait it out.
    await vi.waitFor(
      () => {
        const delivered = receives.receives.filter((r) => r.messageIds.some((id) => commitIds.includes(id)));
        expect(delivered.flatMap((r) => r.messageIds).filter((id) => commitIds.includes(id)).sort()).toEqual([...commitIds].sort());
        const lastDeliveryMs = Math.max(...delivered.map((r) => r.endedAtMs!));
        expect(receives.receives.some((r) => r.startedAtMs >= lastDeliveryMs && r.endedAtMs === undefined)).toBe(true);
      },
      { timeout: 5_000, interval: 20 },
    );
    receives.stop();
    const stopStarted = Date.now();
    await consumer.stop();
    expect(Date.now() - stopStarted).toBeLessThan(1_000);

    expect(votes.map((b) => JSON.parse(b).vote)).toEqual(['YES', 'YES', 'YES']);
    expect(acks.map((b) => JSON.parse(b).phase)).toEqual(['COMMIT', 'COMMIT', 'COMMIT']);
    expect(t.commits.sort()).toEqual([...txIds].sort());
    expect(await local.queueDepth(queueUrl)).toBe(0);
  });

  it('logs a malformed message, leaves it for the dead-letter queue, and keeps consuming', async () => {
    const queueUrl = await local.scratchQueue('requests-2');
    const replyQueueUrl = await local.scratchQueue('replies-2');
    const logger = memoryLogger();
    const t = counting();
    const consumer = startConsumer({
      participant: t.participant,
      queueUrl,
      replyQueueUrl,
      table,
      sqs: local.sqs,
      dynamodb: local.dynamodb,
      logger,
      waitTimeSeconds: 1,
      visibilityTimeoutSeconds: 30,
    });
    await local.send(queueUrl, 'this is not a protocol message');
    await local.send(queueUrl, { v: 1, type: 'PREPARE', txId: 'short' });
    const txId = newTxId();
    await local.send(queueUrl, message('PREPARE', txId, 'tester', { slowMs: 0 }));
    const replies: string[] = [];
    await vi.waitFor(async () => expect(replies.push(...(await local.drain(replyQueueUrl, 1)))).toBeGreaterThan(0), { timeout: 10_000, interval: 50 });
    await consumer.stop();

    expect(replies.map((b) => JSON.parse(b))).toMatchObject([{ type: 'VOTE', txId, vote: 'YES' }]);
    const malformed = logger.lines.filter((l) => l.level === 'error' && l.message.startsWith('malformed'));
    expect(malformed).toHaveLength(2);
    expect(JSON.stringify(malformed.map((l) => l.extra))).toMatch(/not JSON/);
    // Both bad messages are still on the queue (in flight), waiting for redelivery and the DLQ.
    expect(await local.queueDepth(queueUrl)).toBe(2);
  });

  it('extends the visibility of a slow message so that SQS does not redeliver it meanwhile', async () => {
    const queueUrl = await local.scratchQueue('requests-3');
    const replyQueueUrl = await local.scratchQueue('replies-3');
    const t = counting();
    const logger = memoryLogger();
    const receives = local.watchReceives(queueUrl);
    const consumer = startConsumer({
      participant: t.participant,
      queueUrl,
      replyQueueUrl,
      table,
      sqs: local.sqs,
      dynamodb: local.dynamodb,
      logger,
      waitTimeSeconds: 1,
      visibilityTimeoutSeconds: 1,
    });
    const txId = newTxId();
    const messageId = await local.send(queueUrl, message('PREPARE', txId, 'tester', { slowMs: 2_500 }));
    await vi.waitFor(() => expect(receives.deliveries(messageId)).toBe(1), { timeout: 5_000, interval: 20 });
    const firstReceivedAtMs = receives.receives.find((r) => r.messageIds.includes(messageId))!.endedAtMs!;
    await vi.waitFor(async () => expect(await local.queueDepth(queueUrl)).toBe(0), { timeout: 10_000, interval: 50 });
    // Without the extension, a receive that began after the 1 s visibility lapsed would have had the
    // message again: wait for such receives to have completed (while the slow prepare still ran, and
    // after), then check that none did.
    await vi.waitFor(
      () => expect(receives.receives.filter((r) => r.startedAtMs > firstReceivedAtMs + 1_000 && r.endedAtMs !== undefined).length).toBeGreaterThanOrEqual(2),
      { timeout: 10_000, interval: 50 },
    );
    receives.stop();
    await consumer.stop();

    expect(receives.deliveries(messageId)).toBe(1);
    expect(t.prepares).toEqual([txId]);
    expect(await local.drain(replyQueueUrl)).toHaveLength(1);
    expect(logger.lines.filter((l) => l.level !== 'info')).toEqual([]);
  });

  it('deletes the messages it handled together, in DeleteMessageBatch requests, and none twice', async () => {
    const queueUrl = await local.scratchQueue('requests-4');
    const replyQueueUrl = await local.scratchQueue('replies-4');
    const t = counting();
    const deletes: number[] = [];
    let singleDeletes = 0;
    local.sqs.middlewareStack.add(
      (next, context) => (args) => {
        const input = args.input as { QueueUrl?: string; Entries?: unknown[] };
        if (input.QueueUrl === queueUrl && context.commandName === 'DeleteMessageBatchCommand') deletes.push(input.Entries!.length);
        if (input.QueueUrl === queueUrl && context.commandName === 'DeleteMessageCommand') singleDeletes++;
        return next(args);
      },
      { step: 'initialize', name: 'countDeletes' },
    );
    try {
      const txIds = Array.from({ length: 10 }, () => newTxId());
      for (const txId of txIds) await local.send(queueUrl, message('PREPARE', txId, 'tester', { slowMs: 300 }));
      const consumer = startConsumer({ participant: t.participant, queueUrl, replyQueueUrl, table, sqs: local.sqs, dynamodb: local.dynamodb, logger: memoryLogger() });
      const votes: string[] = [];
      await vi.waitFor(async () => expect(votes.push(...(await local.drain(replyQueueUrl)))).toBeGreaterThanOrEqual(10), { timeout: 10_000, interval: 50 });
      await vi.waitFor(() => expect(deletes.reduce((a, b) => a + b, 0)).toBe(10), { timeout: 5_000, interval: 20 });
      await consumer.stop();
      expect(singleDeletes).toBe(0);
      // Handled side by side: deleted in fewer requests than messages (each of up to 10).
      expect(deletes.length).toBeLessThan(10);
      expect(Math.max(...deletes)).toBeLessThanOrEqual(10);
      expect(await local.queueDepth(queueUrl)).toBe(0);
      expect(t.prepares.sort()).toEqual([...txIds].sort());
    } finally {
      local.sqs.middlewareStack.remove('countDeletes');
    }
  });
});

describe('sqsHandler', () => {
  it('reports only the failed records of a batch and replies for the rest', async () => {
    const replyQueueUrl = await local.scratchQueue('replies-4');
    const t = counting();
    const logger = memoryLogger();
    const handler = sqsHandler({ participant: t.participant, replyQueueUrl, table, sqs: local.sqs, dynamodb: local.dynamodb, logger });
    const txId = newTxId();
    const record = (messageId: string, body: string) => ({ messageId, body }) as SQSRecord;
    const event: SQSEvent = {
      Records: [
        record('m-1', JSON.stringify(message('PREPARE', txId, 'tester', { slowMs: 0 }))),
        record('m-2', '{"v":1}'),
        record('m-3', JSON.stringify(message('COMMIT', newTxId(), 'tester'))),
      ],
    };
    const response = await handler(event);

    expect(response.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(['m-2', 'm-3']);
    expect((await local.drain(replyQueueUrl)).map((b) => JSON.parse(b))).toMatchObject([{ type: 'VOTE', txId, vote: 'YES' }]);
    expect(logger.lines.map((l) => l.message)).toEqual(
      expect.arrayContaining(['malformed participant message: left for the dead-letter queue', expect.stringMatching(/^PROTOCOL VIOLATION/)]),
    );
  });
});
