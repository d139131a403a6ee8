import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** A poison message moves aside after this many receives instead of blocking its queue forever. */
const MAX_RECEIVE_COUNT = 5;

export interface QueuesProps {
  prefix: string;
  participants: readonly string[];
  /** Participant -> the IAM principal (role ARN) it runs as; absent: access is granted in the participant's own account instead. */
  principals?: Readonly<Record<string, string>>;
}

/**
 * Per participant: a request queue (the coordinator sends PREPARE/COMMIT/ABORT) and a reply queue
 * (the participant sends votes and acknowledgements), each with a DLQ. A reply queue is the
 * participant's alone: with a principal configured, its policy denies SendMessage to every other
 * principal, so the queue a reply came on names who sent it (DESIGN.md, invariant 8). Refused
 * replies, and replies that fail too often, go to the one reply DLQ.
 */
export class Queues extends Construct {
  /** Participant service -> its request queue. */
  readonly participantQueues: Record<string, sqs.Queue> = {};
  /** Participant service -> its reply queue. */
  readonly replyQueues: Record<string, sqs.Queue> = {};
  readonly replyDeadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: QueuesProps) {
    super(scope, id);
    this.replyDeadLetterQueue = new sqs.Queue(this, 'replies-dlq', { ...COMMON, queueName: `${props.prefix}-replies-dlq`, retentionPeriod: Duration.days(14) });
    for (const service of props.participants) {
      // Named, because a participant service finds its queues by name.
      const requests = withDlq(this, `${service}-requests`, `${props.prefix}-${service}-requests`);
      this.participantQueues[service] = requests;
      // 60 s visibility is 6x the reply Lambda's 10 s timeout: AWS's guidance for SQS event sources.
      const replies = new sqs.Queue(this, `${service}-replies`, {
        ...COMMON,
        queueName: `${props.prefix}-${service}-replies`,
        visibilityTimeout: Duration.seconds(60),
        retentionPeriod: Duration.days(4),
        deadLetterQueue: { queue: this.replyDeadLetterQueue, maxReceiveCount: MAX_RECEIVE_COUNT },
      });
      this.replyQueues[service] = replies;
      const principal = props.principals?.[service];
      if (principal !== undefined) {
        // Only the participant may speak on its reply queue; everyone else is denied, even within the account.
        replies.addToResourcePolicy(
          new iam.PolicyStatement({
            sid: 'OnlyTheParticipantSends',
            effect: iam.Effect.DENY,
            principals: [new iam.AnyPrincipal()],
            actions: ['sqs:SendMessage'],
            resources: [replies.queueArn],
            conditions: { ArnNotEquals: { 'aws:PrincipalArn': principal } },
          }),
        );
        replies.addToResourcePolicy(new iam.PolicyStatement({ principals: [new iam.ArnPrincipal(principal)], actions: ['sqs:SendMessage', 'sqs:GetQueueUrl'], resources: [replies.queueArn] }));
        requests.addToResourcePolicy(
          new iam.PolicyStatement({
            principals: [new iam.ArnPrincipal(principal)],
            actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueUrl', 'sqs:GetQueueAttributes'],
            resources: [requests.queueArn],
          }),
        );
      }
    }
  }
}

const COMMON = {
  encryption: sqs.QueueEncryption.SQS_MANAGED,
  enforceSSL: true,
  // Queues may hold messages for in-doubt transactions: deleting the stack must not drop them.
  removalPolicy: RemovalPolicy.RETAIN,
} as const;

function withDlq(scope: Construct, id: string, queueName: string): sqs.Queue {
  const dlq = new sqs.Queue(scope, `${id}-dlq`, {
    ...COMMON,
    queueName: `${queueName}-dlq`,
    // The longest SQS allows: time for a human to look at what failed.
    retentionPeriod: Duration.days(14),
  });
  return new sqs.Queue(scope, id, {
    ...COMMON,
    queueName,
    visibilityTimeout: Duration.seconds(60),
    retentionPeriod: Duration.days(4),
    deadLetterQueue: { queue: dlq, maxReceiveCount: MAX_RECEIVE_COUNT },
  });
}
