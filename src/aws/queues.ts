// Messages to participants, one SQS queue per participant service, each with its dead-letter queue.
import { SQSClient, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { ParticipantMessage } from '../core/messages';

/** SQS allows 256 KiB per attribute value; a reason is a sentence, so keep it short. */
const MAX_REASON_CHARS = 1_000;

export class ParticipantQueues {
  constructor(
    private readonly queueUrls: Record<string, string>,
    private readonly sqs: SQSClient = new SQSClient({}),
    /** Participant -> its request queue's DLQ; where copies of messages nobody acknowledges go. */
    private readonly deadLetterUrls: Record<string, string> = {},
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
    const attribute = (value: string) => ({ DataType: 'String', StringValue: value });
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
            MessageBody: JSON.stringify(m),
            MessageAttributes: {
              'dtc-reason': attribute(reason.length <= MAX_REASON_CHARS ? reason : `${reason.slice(0, MAX_REASON_CHARS - 1)}…`),
              'dtc-participant': attribute(m.participant),
              'dtc-source': attribute('coordinator'),
            },
          }),
        );
      }),
    );
    return missing;
  }

  private async sendTo(service: string, message: ParticipantMessage): Promise<void> {
    const QueueUrl = this.queueUrls[service];
    if (!QueueUrl) throw new Error(`no request queue is configured for participant '${service}'`);
    await this.sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: JSON.stringify(message) }));
  }
}
