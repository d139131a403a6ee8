// Messages to participants, one SQS queue per participant service.
import { SQSClient, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { ParticipantMessage } from '../core/messages';

export class ParticipantQueues {
  constructor(
    private readonly queueUrls: Record<string, string>,
    private readonly sqs: SQSClient = new SQSClient({}),
  ) {}

  get services(): string[] {
    return Object.keys(this.queueUrls);
  }

  /** One SendMessage per participant: each has its own queue, so there is nothing to batch. */
  async send(messages: ParticipantMessage[]): Promise<void> {
    await Promise.all(messages.map((m) => this.sendTo(m.participant, m)));
  }

  private async sendTo(service: string, message: ParticipantMessage): Promise<void> {
    const QueueUrl = this.queueUrls[service];
    if (!QueueUrl) throw new Error(`no request queue is configured for participant '${service}'`);
    await this.sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: JSON.stringify(message) }));
  }
}
