// Messages to participants, one SQS queue per participant service, each with its dead-letter queue.
import { GetQueueAttributesCommand, GetQueueUrlCommand, SQSClient, SendMessageCommand } from '@aws-sdk/client-sqs';
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

  /** One SendMessage per participant: each has its own queue, so there is nothing to batch. */
  async send(messages: ParticipantMessage[]): Promise<void> {
    await Promise.all(messages.map((m) => this.sendTo(m.participant, m)));
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

  private async sendTo(service: string, message: ParticipantMessage): Promise<void> {
    const QueueUrl = this.queueUrls[service];
    if (!QueueUrl) throw new Error(`no request queue is configured for participant '${service}'`);
    await this.sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: sqsBody(message) }));
  }
}
