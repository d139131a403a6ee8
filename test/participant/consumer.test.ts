import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startConsumer } from '../../src/participant/consumer';
import { defineParticipant } from '../../src/participant/define';
import { sqsHandler } from '../../src/participant/lambda';
import { type Local, memoryLogger, message, newTxId, startLocal } from './local';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function counting() {
  const prepares: string[] = [];
  const commits: string[] = [];
  const participant = defineParticipant({
    service: 'tester',
    operation: z.object({ slowMs: z.number().int().nonnegative() }),
    async prepare({ txId, operation }) {
      prepares.push(txId);
      await sleep(operation.slowMs);
      return { vote: 'YES' };
    },
    async commit({ txId }) {
      commits.push(txId);
    },
    async abort() {},
  });
  return { participant, prepares, commits };
}

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() - start > timeoutMs) return value;
    await sleep(50);
  }
}

let local: Local;
let table: string;

beforeAll(async () => {
  local = await startLocal();
  table = await local.createTable('tester');
});
afterAll(async () => {
  await local.stop();
});

describe('startConsumer', () => {
  it('processes PREPARE and COMMIT from a real queue, deletes them, and stops promptly mid long-poll', async () => {
    const queueUrl = await local.createQueue('requests-1');
    const replyQueueUrl = await local.createQueue('replies-1');
    const t = counting();
    const consumer = startConsumer({ participant: t.participant, queueUrl, replyQueueUrl, table, sqs: local.sqs, dynamodb: local.dynamodb, logger: memoryLogger() });
    const txIds = [newTxId(), newTxId(), newTxId()];
    for (const txId of txIds) await local.send(queueUrl, message('PREPARE', txId, 'tester', { slowMs: 0 }));
    const votes: string[] = [];
    await until(async () => votes.push(...(await local.drain(replyQueueUrl))), () => votes.length >= 3);
    for (const txId of txIds) await local.send(queueUrl, message('COMMIT', txId, 'tester'));
    const acks: string[] = [];
    await until(async () => acks.push(...(await local.drain(replyQueueUrl))), () => acks.length >= 3);

    // The consumer is now parked in a 20 s long poll: stop must abort it, not wait it out.
    await sleep(200);
    const stopStarted = Date.now();
    await consumer.stop();
    expect(Date.now() - stopStarted).toBeLessThan(1_000);

    expect(votes.map((b) => JSON.parse(b).vote)).toEqual(['YES', 'YES', 'YES']);
    expect(acks.map((b) => JSON.parse(b).phase)).toEqual(['COMMIT', 'COMMIT', 'COMMIT']);
    expect(t.commits.sort()).toEqual([...txIds].sort());
    expect(await local.queueDepth(queueUrl)).toBe(0);
  });

  it('logs a malformed message, leaves it for the dead-letter queue, and keeps consuming', async () => {
    const queueUrl = await local.createQueue('requests-2');
    const replyQueueUrl = await local.createQueue('replies-2');
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
    const replies = await until(() => local.drain(replyQueueUrl, 1), (r) => r.length > 0);
    await consumer.stop();

    expect(replies.map((b) => JSON.parse(b))).toMatchObject([{ type: 'VOTE', txId, vote: 'YES' }]);
    const malformed = logger.lines.filter((l) => l.level === 'error' && l.message.startsWith('malformed'));
    expect(malformed).toHaveLength(2);
    expect(JSON.stringify(malformed.map((l) => l.extra))).toMatch(/not JSON/);
    // Both bad messages are still on the queue (in flight), waiting for redelivery and the DLQ.
    expect(await local.queueDepth(queueUrl)).toBe(2);
  });

  it('extends the visibility of a slow message so that SQS does not redeliver it meanwhile', async () => {
    const queueUrl = await local.createQueue('requests-3');
    const replyQueueUrl = await local.createQueue('replies-3');
    const t = counting();
    const logger = memoryLogger();
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
    await local.send(queueUrl, message('PREPARE', txId, 'tester', { slowMs: 2_500 }));
    await until(() => local.queueDepth(queueUrl), (depth) => depth === 0);
    // Long enough for a redelivery (1 s visibility) to have produced a second vote.
    await sleep(1_500);
    await consumer.stop();

    expect(t.prepares).toEqual([txId]);
    expect(await local.drain(replyQueueUrl)).toHaveLength(1);
    expect(logger.lines.filter((l) => l.level !== 'info')).toEqual([]);
  });
});

describe('sqsHandler', () => {
  it('reports only the failed records of a batch and replies for the rest', async () => {
    const replyQueueUrl = await local.createQueue('replies-4');
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
