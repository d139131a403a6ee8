// Loopback DynamoDB (dynalite) and SQS (fauxqs) with explicitly configured clients, for the
// participant and demo tests. Not a test file itself.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createTableAndWait } from '../../src/aws/tables';
import { CreateQueueCommand, DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient, SendMessageCommand } from '@aws-sdk/client-sqs';
import { PROTOCOL_VERSION, type ParticipantMessage, type ReplyMessage, replyMessage } from '../../src/core/messages';
import { startDynamo } from '../../src/local/dynamodb';
import { startSqs } from '../../src/local/sqs';

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const region = 'us-east-1';

export interface Local {
  dynamodb: DynamoDBClient;
  sqs: SQSClient;
  createTable(name: string): Promise<string>;
  createQueue(name: string): Promise<string>;
  send(queueUrl: string, body: unknown): Promise<void>;
  /** Reads and deletes what the queue holds now (or waits up to `waitSeconds` for the first message). */
  drain(queueUrl: string, waitSeconds?: number): Promise<string[]>;
  replies(queueUrl: string, waitSeconds?: number): Promise<ReplyMessage[]>;
  /** Visible + in flight. */
  queueDepth(queueUrl: string): Promise<number>;
  stop(): Promise<void>;
}

export async function startLocal(): Promise<Local> {
  const dynamo = await startDynamo();
  const sqsServer = await startSqs();
  const dynamodb = new DynamoDBClient({ endpoint: dynamo.endpoint, region, credentials });
  const sqs = new SQSClient({ endpoint: sqsServer.endpoint, region, credentials });
  const drain = async (QueueUrl: string, waitSeconds = 0): Promise<string[]> => {
    const bodies: string[] = [];
    for (let i = 0; i < 100; i++) {
      const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: i === 0 ? waitSeconds : 0 }));
      const messages = out.Messages ?? [];
      if (messages.length === 0) return bodies;
      for (const m of messages) {
        bodies.push(m.Body ?? '');
        await sqs.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle: m.ReceiptHandle }));
      }
    }
    return bodies;
  };
  return {
    dynamodb,
    sqs,
    async createTable(TableName) {
      await createTableAndWait(dynamodb, {
        TableName,
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
      });
      return TableName;
    },
    async createQueue(QueueName) {
      const out = await sqs.send(new CreateQueueCommand({ QueueName }));
      return out.QueueUrl!;
    },
    async send(QueueUrl, body) {
      await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: typeof body === 'string' ? body : JSON.stringify(body) }));
    },
    drain,
    async replies(queueUrl, waitSeconds = 0) {
      return (await drain(queueUrl, waitSeconds)).map((b) => replyMessage.parse(JSON.parse(b)));
    },
    async queueDepth(QueueUrl) {
      const out = await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
      );
      return Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) + Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
    },
    async stop() {
      dynamodb.destroy();
      sqs.destroy();
      await Promise.all([dynamo.stop(), sqsServer.stop()]);
    },
  };
}

export function message(type: ParticipantMessage['type'], txId: string, participant: string, operation?: unknown): ParticipantMessage {
  return {
    v: PROTOCOL_VERSION,
    type,
    txId,
    participant,
    ...(operation === undefined ? {} : { operation }),
    deadlineAt: 4_102_444_800_000,
    attempt: 1,
  };
}

/** A logger that keeps what it was told, so tests can check that failures were reported. */
export function memoryLogger(): { lines: { level: string; message: string; extra: unknown[] }[]; info(m: string, ...e: unknown[]): void; warn(m: string, ...e: unknown[]): void; error(m: string, ...e: unknown[]): void } {
  const lines: { level: string; message: string; extra: unknown[] }[] = [];
  return {
    lines,
    info: (message, ...extra) => lines.push({ level: 'info', message, extra }),
    warn: (message, ...extra) => lines.push({ level: 'warn', message, extra }),
    error: (message, ...extra) => lines.push({ level: 'error', message, extra }),
  };
}

let counter = 0;
/** Unique, protocol-valid transaction ids without randomness. */
export function newTxId(label = 'tx'): string {
  counter++;
  return `${label}-${String(counter).padStart(8, '0')}`;
}
