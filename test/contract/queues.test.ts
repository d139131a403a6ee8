// One suite, two queues: the in-memory SQS model (src/memory/sqs.ts, on a manual clock) and fauxqs
// through the real @aws-sdk/client-sqs. What both must agree on: send/receive/delete, redelivery
// after the visibility timeout, stale receipt handles that delete nothing, redrive to the DLQ after
// maxReceiveCount, and the dead letters ParticipantQueues writes.
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ParticipantQueues, sendBatches } from '../../src/aws/queues';
import type { ParticipantMessage } from '../../src/core/messages';
import type { ParticipantQueuesPort } from '../../src/core/ports';
import { startSqs, type LocalSqs } from '../../src/local/sqs';
import { MemoryParticipantQueues, MemoryQueue, type MessageAttributes } from '../../src/memory/sqs';

interface Received {
  body: string;
  receiptHandle: string;
  receiveCount: number;
  attributes: MessageAttributes;
}

interface Queue {
  send(body: string): Promise<void>;
  receive(max: number, visibilitySeconds?: number): Promise<Received[]>;
  delete(receiptHandle: string): Promise<void>;
  changeVisibility(receiptHandle: string, seconds: number): Promise<void>;
}

interface Driver {
  createQueue(options?: { visibilitySeconds?: number; deadLetter?: { queue: Queue; maxReceiveCount: number } }): Promise<Queue>;
  /** Participant queues over fresh queues for `withDlq` participants that have a DLQ, and a reply DLQ; answers the DLQs. */
  participantQueues(services: string[], withDlq: string[]): Promise<{ port: ParticipantQueuesPort; dlqs: Record<string, Queue>; replyDlq: Queue }>;
  /** Lets `seconds` of visibility pass, then answers what `receive` finds (fauxqs: polls until it finds something). */
  after(seconds: number, receive: () => Promise<Received[]>): Promise<Received[]>;
}

let queueCount = 0;
const nextName = (): string => `contract-${++queueCount}`;

function memoryDriver(): Driver {
  let nowMs = Date.UTC(2026, 0, 1);
  const clock = () => nowMs;
  const wrap = (q: MemoryQueue): Queue & { q: MemoryQueue } => ({
    q,
    send: async (body) => void q.send(body),
    receive: async (max, visibilitySeconds) =>
      q.receive(max, visibilitySeconds === undefined ? undefined : visibilitySeconds * 1000).map((m) => ({
        body: m.body,
        receiptHandle: m.receiptHandle,
        receiveCount: m.receiveCount,
        attributes: m.attributes,
      })),
    delete: async (receipt) => void q.delete(receipt),
    changeVisibility: async (receipt, seconds) => void q.changeVisibility(receipt, seconds * 1000),
  });
  const createQueue: Driver['createQueue'] = async (options = {}) => {
    const deadLetter = options.deadLetter as { queue: Queue & { q?: MemoryQueue }; maxReceiveCount: number } | undefined;
    return wrap(
      new MemoryQueue(nextName(), {
        clock,
        ...(options.visibilitySeconds !== undefined ? { visibilityTimeoutMs: options.visibilitySeconds * 1000 } : {}),
        ...(deadLetter ? { redrive: { deadLetterQueue: deadLetter.queue.q!, maxReceiveCount: deadLetter.maxReceiveCount } } : {}),
      }),
    );
  };
  return {
    createQueue,
    async participantQueues(services, withDlq) {
      const queues = Object.fromEntries(services.map((s) => [s, new MemoryQueue(nextName(), { clock })]));
      const dlqs = Object.fromEntries(withDlq.map((s) => [s, new MemoryQueue(nextName(), { clock })]));
      const replyDlq = new MemoryQueue(nextName(), { clock });
      return {
        port: new MemoryParticipantQueues(queues, dlqs, replyDlq),
        dlqs: Object.fromEntries(Object.entries(dlqs).map(([s, q]) => [s, wrap(q)])),
        replyDlq: wrap(replyDlq),
      };
    },
    async after(seconds, receive) {
      nowMs += seconds * 1000;
      return receive();
    },
  };
}

function fauxqsDriver(sqs: SQSClient): Driver {
  const wrap = (QueueUrl: string): Queue & { url: string } => ({
    url: QueueUrl,
    send: async (body) => void (await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: body }))),
    receive: async (max, visibilitySeconds) => {
      const out = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl,
          MaxNumberOfMessages: max,
          WaitTimeSeconds: 0,
          MessageSystemAttributeNames: ['ApproximateReceiveCount'],
          MessageAttributeNames: ['All'],
          ...(visibilitySeconds !== undefined ? { VisibilityTimeout: visibilitySeconds } : {}),
        }),
      );
      return (out.Messages ?? []).map((m) => ({
        body: m.Body!,
        receiptHandle: m.ReceiptHandle!,
        receiveCount: Number(m.Attributes?.ApproximateReceiveCount),
        attributes: Object.fromEntries(
          Object.entries(m.MessageAttributes ?? {}).map(([k, v]) => [k, { DataType: v.DataType as 'String' | 'Number', StringValue: v.StringValue! }]),
        ),
      }));
    },
    delete: async (ReceiptHandle) => void (await sqs.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle }))),
    changeVisibility: async (ReceiptHandle, seconds) =>
      void (await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl, ReceiptHandle, VisibilityTimeout: seconds }))),
  });
  const create = async (Attributes: Record<string, string> = {}): Promise<Queue & { url: string }> =>
    wrap((await sqs.send(new CreateQueueCommand({ QueueName: nextName(), Attributes }))).QueueUrl!);
  return {
    async createQueue(options = {}) {
      const attributes: Record<string, string> = {};
      if (options.visibilitySeconds !== undefined) attributes.VisibilityTimeout = String(options.visibilitySeconds);
      if (options.deadLetter) {
        const dlqUrl = (options.deadLetter.queue as Queue & { url: string }).url;
        const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
        attributes.RedrivePolicy = JSON.stringify({ deadLetterTargetArn: arn, maxReceiveCount: options.deadLetter.maxReceiveCount });
      }
      return create(attributes);
    },
    async participantQueues(services, withDlq) {
      const queues = Object.fromEntries(await Promise.all(services.map(async (s) => [s, (await create()).url] as const)));
      const dlqs = Object.fromEntries(await Promise.all(withDlq.map(async (s) => [s, await create()] as const)));
      const replyDlq = await create();
      return {
        port: new ParticipantQueues(queues, sqs, Object.fromEntries(Object.entries(dlqs).map(([s, q]) => [s, q.url])), replyDlq.url),
        dlqs,
        replyDlq,
      };
    },
    async after(seconds, receive) {
      return vi.waitFor(
        async () => {
          const found = await receive();
          if (found.length === 0) throw new Error('nothing visible yet');
          return found;
        },
        { timeout: seconds * 1000 + 10_000, interval: 100 },
      );
    },
  };
}

let local: LocalSqs;
let client: SQSClient;

beforeAll(async () => {
  local = await startSqs();
  client = new SQSClient({ endpoint: local.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
});

afterAll(async () => {
  client?.destroy();
  await local?.stop();
});

const drivers: [string, () => Driver][] = [
  ['memory', memoryDriver],
  ['fauxqs', () => fauxqsDriver(client)],
];

describe.each(drivers)('SQS standard queue: %s', (_name, make) => {
  it('delivers a sent message once while it is in flight, and never again once deleted', async () => {
    const driver = make();
    const queue = await driver.createQueue({ visibilitySeconds: 30 });
    await queue.send('one');
    await queue.send('two');
    const received = await queue.receive(10);
    expect(received.map((m) => m.body).sort()).toEqual(['one', 'two']);
    expect(received.map((m) => m.receiveCount)).toEqual([1, 1]);
    expect(await queue.receive(10)).toEqual([]);
    for (const m of received) await queue.delete(m.receiptHandle);
    expect(await queue.receive(10)).toEqual([]);
  });

  it('redelivers after the visibility timeout with a new receipt handle; the old one is stale and deletes nothing', async () => {
    const driver = make();
    const queue = await driver.createQueue({ visibilitySeconds: 30 });
    await queue.send('again');
    const [first] = await queue.receive(1, 1);
    const [second] = await driver.after(1, () => queue.receive(1, 30));
    expect(second!.body).toBe('again');
    expect(second!.receiveCount).toBe(2);
    expect(second!.receiptHandle).not.toBe(first!.receiptHandle);
    // "The request succeeds, but the message will not be deleted" (SQS DeleteMessage).
    await queue.delete(first!.receiptHandle);
    await queue.changeVisibility(second!.receiptHandle, 0);
    const [third] = await queue.receive(1, 30);
    expect(third!.receiveCount).toBe(3);
    await queue.delete(third!.receiptHandle);
    expect(await queue.receive(1)).toEqual([]);
  });

  it('makes a message visible again at once with ChangeMessageVisibility 0', async () => {
    const queue = await make().createQueue({ visibilitySeconds: 30 });
    await queue.send('back');
    const [m] = await queue.receive(1);
    await queue.changeVisibility(m!.receiptHandle, 0);
    const [again] = await queue.receive(1);
    expect(again!.body).toBe('back');
    expect(again!.receiveCount).toBe(2);
  });

  it('moves a message received maxReceiveCount times to the dead-letter queue', async () => {
    const driver = make();
    const dlq = await driver.createQueue();
    const queue = await driver.createQueue({ visibilitySeconds: 1, deadLetter: { queue: dlq, maxReceiveCount: 2 } });
    await queue.send('poison');
    expect((await queue.receive(1)).map((m) => m.receiveCount)).toEqual([1]);
    expect((await driver.after(1, () => queue.receive(1))).map((m) => m.receiveCount)).toEqual([2]);
    const dead = await driver.after(1, async () => {
      // A receive after the second one finds the message gone from the queue: moved, not delivered.
      expect(await queue.receive(1)).toEqual([]);
      return dlq.receive(1);
    });
    expect(dead.map((m) => m.body)).toEqual(['poison']);
  });

  it('ParticipantQueues: sends to each participant\'s queue and dead-letters with the same attributes', async () => {
    const { port, dlqs } = await make().participantQueues(['inventory', 'payment'], ['inventory']);
    const message: ParticipantMessage = { v: 1, type: 'COMMIT', txId: 'tx-contract', participant: 'inventory', deadlineAt: 1, attempt: 2 };
    await port.send([message]);
    const missing = await port.deadLetter([message, { ...message, participant: 'payment' }], `in doubt: ${'x'.repeat(1_200)}`);
    expect(missing).toEqual(['payment']);
    const [dead] = await dlqs.inventory!.receive(1);
    expect(JSON.parse(dead!.body)).toEqual(message);
    expect(Object.keys(dead!.attributes).sort()).toEqual(['dtc-participant', 'dtc-reason', 'dtc-source']);
    expect(dead!.attributes['dtc-participant']).toEqual({ DataType: 'String', StringValue: 'inventory' });
    expect(dead!.attributes['dtc-source']).toEqual({ DataType: 'String', StringValue: 'coordinator' });
    expect(dead!.attributes['dtc-reason']!.StringValue).toHaveLength(1_000);
    await expect(port.send([{ ...message, participant: 'shipping' }])).rejects.toThrow(/no request queue is configured for participant 'shipping'/);
  });

  it('ParticipantQueues: dead-letters a refused reply as it came, with the reason and the queue\'s owner', async () => {
    const { port, replyDlq } = await make().participantQueues(['inventory', 'payment'], []);
    const body = '{"v":1,"type":"VOTE","txId":"tx-contract","participant":"payment","vote":"YES"}';
    await port.deadLetterReply(body, "the reply names payment but came on inventory's reply queue", 'inventory');
    const [dead] = await replyDlq.receive(1);
    expect(dead!.body).toBe(body);
    expect(dead!.attributes).toEqual({
      'dtc-reason': { DataType: 'String', StringValue: "the reply names payment but came on inventory's reply queue" },
      'dtc-participant': { DataType: 'String', StringValue: 'inventory' },
      'dtc-source': { DataType: 'String', StringValue: 'reply' },
    });
  });
});

describe('ParticipantQueues on fauxqs: several messages for one participant', () => {
  it('go ten to a SendMessageBatch, one alone in a SendMessage, and every message arrives once', async () => {
    const queueUrls: Record<string, string> = {};
    for (const service of ['inventory', 'payment']) queueUrls[service] = (await client.send(new CreateQueueCommand({ QueueName: `bulk-${service}-${Date.now()}` }))).QueueUrl!;
    const port = new ParticipantQueues(queueUrls, client);
    const message = (txId: string, participant: string): ParticipantMessage => ({ v: 1, type: 'COMMIT', txId, participant, deadlineAt: 1, attempt: 2 });
    const inventory = Array.from({ length: 23 }, (_, i) => message(`tx-bulk-${String(i).padStart(4, '0')}`, 'inventory'));
    const sent = vi.spyOn(client, 'send');
    try {
      await port.send([...inventory, message('tx-bulk-alone', 'payment')]);
      const commands = sent.mock.calls.map(([command]) => command.constructor.name).sort();
      expect(commands).toEqual(['SendMessageBatchCommand', 'SendMessageBatchCommand', 'SendMessageBatchCommand', 'SendMessageCommand']);
    } finally {
      sent.mockRestore();
    }
    const received: string[] = [];
    for (;;) {
      const out = await client.send(new ReceiveMessageCommand({ QueueUrl: queueUrls.inventory, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
      if (!out.Messages?.length) break;
      received.push(...out.Messages.map((m) => (JSON.parse(m.Body!) as ParticipantMessage).txId));
    }
    expect(received.sort()).toEqual(inventory.map((m) => m.txId));
    const payment = await client.send(new ReceiveMessageCommand({ QueueUrl: queueUrls.payment, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    expect(payment.Messages?.map((m) => (JSON.parse(m.Body!) as ParticipantMessage).txId)).toEqual(['tx-bulk-alone']);
  });

  it('cuts batches at 10 entries and at 256 KiB of bodies', () => {
    expect(sendBatches(Array.from({ length: 21 }, () => 'x')).map((b) => b.length)).toEqual([10, 10, 1]);
    const big = 'y'.repeat(100 * 1024);
    expect(sendBatches([big, big, big, 'z']).map((b) => b.length)).toEqual([2, 2]);
    expect(sendBatches([])).toEqual([]);
  });
});
