// A participant's replies (VOTE, ACK) onto the coordinator's reply queue.
import { SQSClient, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { ReplyMessage } from '../core/messages';
import type { ReplySender } from '../core/ports';
import { sqsBody } from './queues';

export class SqsReplySender implements ReplySender {
  constructor(
    private readonly queueUrl: string,
    private readonly sqs: SQSClient = new SQSClient({}),
  ) {}

  async send(message: ReplyMessage): Promise<void> {
    await this.sqs.send(new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: sqsBody(message) }));
  }
}
