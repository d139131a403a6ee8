// Messages to participants, one SQS queue per participant service, each with its dead-letter queue.
import { GetQueueAttributesCommand, GetQueueUrlCommand, SQSClient, SendMessageBatchCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { type ParticipantMessage, clipReason } from '../core/messages';
import type { ParticipantQueuesPort } from '../core/ports';

/**
 * The message attributes of a dead letter, whoever moves or copies it there (the participant SDK's
 * consumer, the coordinator for an in-doubt participant): `dtc-reason` (clipped), `dtc-participant`,
 * and whatever the sender adds.
 */
export function deadLetterAttributes(
  reason: string,
  participant: string,
  extra: Record<string, string | number> = {},
): Record<string, { DataType: 'String' | 'Number'; StringValue: string }> {
  const attributes: Record<string, { DataType: 'String' | 'Number'; StringValue: string }> = {
    'dtc-reason': { DataType: 'String', StringValue: clipReason(reason) },
    'dtc-participant': { DataType: 'String', StringValue: participant },
  };
  for (const [name, value] of Object.entries(extra)) {
    attributes[name] = typeof value === 'number' ? { DataType: 'Number', StringValue: String(value) } : { DataType: 'String', StringValue: value };
  }
  return attributes;
}

/** A queue's dead-letter queue and receive limit. */
export interface DeadLetterTarget {
  url: string;
  maxReceiveCount: number;
}

/** The queue's dead-letter queue, from its RedrivePolicy; undefined when it has none. */
export async function readRedrivePolicy(sqs: SQSClient, queueUrl: string): Promise<DeadLetterTarget | undefined> {
  const attrs = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['RedrivePolicy'] }));
  const raw = attrs.Attributes?.RedrivePolicy;
  if (!raw) return undefined;
  const policy = JSON.parse(raw) as { deadLetterTargetArn?: string; maxReceiveCount?: number | string };
  // arn:aws:sqs:<region>:<account>:<name>
  const [, , , , account, name] = (policy.deadLetterTargetArn ?? '').split(':');
  if (!name) return undefined;
  const out = await sqs.send(new GetQueueUrlCommand({ QueueName: name, ...(account ? { QueueOwnerAWSAccountId: account } : {}) }));
  const maxReceiveCount = Number(policy.maxReceiveCount ?? 0);
  return out.QueueUrl && maxReceiveCount > 0 ? { url: out.QueueUrl, maxReceiveCount } : undefined;
}

/**
 * A message as SQS takes it: JSON text in which the two characters JSON leaves as they are but SQS
 * refuses (U+FFFE and U+FFFF; JSON.stringify already escapes control characters and lone
 * surrogates) are written as escapes. The same JSON value, so any string an operation carries can
 * be sent.
 */
export function sqsBody(message: unknown): string {
  return JSON.stringify(message).replace(/[\ufffe\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`);
}

export class ParticipantQueues implements ParticipantQueuesPort {
  constructor(
    private readonly queueUrls: Record<string, string>,
    private readonly sqs: SQSClient = new SQSClient({}),
    /** Participant -> its request queue's DLQ; where copies of messages nobody acknowledges go. */
    private readonly deadLetterUrls: Record<string, string> = {},
    /** Where refused replies go (a reply naming someone other than its queue's owner, say). */
    private readonly replyDeadLetterUrl?: string,
  ) {}

  get services(): string[] {
    return Object.keys(this.queueUrls);
  }

  /**
   * Every message to its participant's queue: one SendMessage for a participant with one message (a
   * start's PREPARE, a decision's phase two), SendMessageBatch of up to 10 for a participant with
   * more (supervision re-sending to a participant that came back), all at once. Rejects if any
   * message was not accepted, naming them; the caller's retry re-sends, and the barrier makes a
   * duplicate a no-op.
   */
  async send(messages: ParticipantMessage[]): Promise<void> {
    const byQueue = new Map<string, ParticipantMessage[]>();
    for (const m of messages) {
      const QueueUrl = this.queueUrls[m.participant];
      if (!QueueUrl) throw new Error(`no request queue is configured for participant '${m.participant}'`);
      const queued = byQueue.get(QueueUrl);
      if (queued) queued.push(m);
      else byQueue.set(QueueUrl, [m]);
    }
    const sends: Promise<string[]>[] = [];
    for (const [QueueUrl, queued] of byQueue) {
      if (queued.length === 1) {
        sends.push(this.sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: sqsBody(queued[0]) })).then(() => []));
        continue;
      }
      for (const chunk of sendBatches(queued.map((m) => sqsBody(m)))) {
        const Entries = chunk.map((MessageBody, i) => ({ Id: String(i), MessageBody }));
        sends.push(
          this.sqs.send(new SendMessageBatchCommand({ QueueUrl, Entries })).then((out) =>
            (out.Failed ?? []).map((f) => `${QueueUrl} entry ${f.Id}: ${f.Code}${f.Message ? ` (${f.Message})` : ''}`),
          ),
        );
      }
    }
    const failed = (await Promise.all(sends)).flat();
    if (failed.length > 0) throw new Error(`SendMessageBatch refused ${failed.length} of ${messages.length} messages: ${failed.slice(0, 5).join('; ')}`);
  }

  /**
   * Puts a copy of each message in its participant's DLQ with the reason, for operators (the DLQ
   * alarm fires) and for redrive; the original stays in the request queue. A participant with no
   * configured DLQ is returned, not thrown: the transaction goes on either way.
   */
  async deadLetter(messages: ParticipantMessage[], reason: string): Promise<string[]> {
    const missing: string[] = [];
    await Promise.all(
      messages.map(async (m) => {
        const QueueUrl = this.deadLetterUrls[m.participant];
        if (!QueueUrl) {
          missing.push(m.participant);
          return;
        }
        await this.sqs.send(
          new SendMessageCommand({
            QueueUrl,
            MessageBody: sqsBody(m),
            MessageAttributes: deadLetterAttributes(reason, m.participant, { 'dtc-source': 'coordinator' }),
          }),
        );
      }),
    );
    return missing;
  }

  async deadLetterReply(body: string, reason: string, owner: string): Promise<void> {
    if (!this.replyDeadLetterUrl) throw new Error('no reply dead-letter queue is configured (REPLY_DEAD_LETTER_QUEUE_URL)');
    await this.sqs.send(
      new SendMessageCommand({ QueueUrl: this.replyDeadLetterUrl, MessageBody: body, MessageAttributes: deadLetterAttributes(reason, owner, { 'dtc-source': 'reply' }) }),
    );
  }

}

/** SendMessageBatch takes at most 10 entries and 256 KiB of bodies (the smaller of SQS's limits, old and new). */
const BATCH_ENTRIES = 10;
const BATCH_BYTES = 256 * 1024;

/** Bodies in sending order, cut into batches SendMessageBatch takes. */
export function sendBatches(bodies: readonly string[]): string[][] {
  const batches: string[][] = [];
  let current: string[] = [];
  let bytes = 0;
  for (const body of bodies) {
    const size = Buffer.byteLength(body);
    if (current.length > 0 && (current.length === BATCH_ENTRIES || bytes + size > BATCH_BYTES)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(body);
    bytes += size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}
