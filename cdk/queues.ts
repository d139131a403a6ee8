import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** A poison message moves aside after this many receives instead of blocking its queue forever. */
const MAX_RECEIVE_COUNT = 5;

export interface QueuesProps {
  prefix: string;
  participants: readonly string[];
}

/** One request queue per participant and the coordinator's reply queue, each with its DLQ. */
export class Queues extends Construct {
  /** Participant service -> its request queue. */
  readonly participantQueues: Record<string, sqs.Queue> = {};
  readonly replyQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: QueuesProps) {
    super(scope, id);
    for (const service of props.participants) {
      // Named, because a participant service finds its queue by name.
      this.participantQueues[service] = withDlq(this, `${service}-requests`, `${props.prefix}-${service}-requests`);
    }
    // 60 s is 6x the reply Lambda's 10 s timeout: AWS's guidance for SQS event sources, so a batch
    // still running is not handed to a second invocation.
    this.replyQueue = withDlq(this, 'replies', `${props.prefix}-replies`);
  }
}

function withDlq(scope: Construct, id: string, queueName: string): sqs.Queue {
  const common = {
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    // Queues may hold messages for in-doubt transactions: deleting the stack must not drop them.
    removalPolicy: RemovalPolicy.RETAIN,
  };
  const dlq = new sqs.Queue(scope, `${id}-dlq`, {
    ...common,
    queueName: `${queueName}-dlq`,
    // The longest SQS allows: time for a human to look at what failed.
    retentionPeriod: Duration.days(14),
  });
  return new sqs.Queue(scope, id, {
    ...common,
    queueName,
    visibilityTimeout: Duration.seconds(60),
    retentionPeriod: Duration.days(4),
    deadLetterQueue: { queue: dlq, maxReceiveCount: MAX_RECEIVE_COUNT },
  });
}
