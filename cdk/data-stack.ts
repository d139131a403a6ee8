import { RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import type { DtcConfig } from './build';
import { LockTable } from './locks';
import { LogTable } from './log-table';
import { Queues } from './queues';

export interface DataStackProps extends StackProps {
  config: DtcConfig;
}

/**
 * The stateful half, in its own stack so the stateless coordinator can be replaced, renamed or
 * destroyed without touching the log or messages in flight. Everything here is RETAIN.
 */
export class DataStack extends Stack {
  readonly txTable: dynamodb.Table;
  readonly lockTable: dynamodb.Table;
  /** Participant service -> its request queue, and its reply queue. */
  readonly participantQueues: Readonly<Record<string, sqs.Queue>>;
  readonly replyQueues: Readonly<Record<string, sqs.Queue>>;
  readonly replyDeadLetterQueue: sqs.Queue;
  /** Where decision events go (docs/events.md); undefined when they are switched off. */
  readonly eventBus: events.IEventBus | undefined;

  constructor(scope: Construct, id: string, props: DataStackProps) {
    super(scope, id, props);
    this.txTable = new LogTable(this, 'Log').table;
    this.lockTable = new LockTable(this, 'Locks').table;
    const queues = new Queues(this, 'Queues', { prefix: props.config.prefix, participants: props.config.participants, principals: props.config.participantPrincipals });
    this.participantQueues = queues.participantQueues;
    this.replyQueues = queues.replyQueues;
    this.replyDeadLetterQueue = queues.replyDeadLetterQueue;
    this.eventBus = decisionBus(this, props.config);
  }
}

/**
 * The decision events' bus: the account's default bus, or one of this environment's own. Here, not in
 * the coordinator stack, because subscribers' rules hang on it: replacing the stateless stack must not
 * take their subscriptions with it. RETAIN, like everything here.
 */
function decisionBus(scope: Stack, config: Pick<DtcConfig, 'decisionEvents' | 'eventBus'>): events.IEventBus | undefined {
  if (!config.decisionEvents) return undefined;
  if (config.eventBus === 'default') return events.EventBus.fromEventBusName(scope, 'DecisionEvents', 'default');
  const bus = new events.EventBus(scope, 'DecisionEvents', { eventBusName: config.eventBus, description: 'DTC decision events (docs/events.md)' });
  bus.applyRemovalPolicy(RemovalPolicy.RETAIN);
  return bus;
}
