// Wiring shared by the Lambda handlers: one Coordinator per process, built on first use from the
// environment with the SDK's default clients (which honour the AWS_ENDPOINT_URL_* variables).
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { Logger } from '@aws-lambda-powertools/logger';
import { Coordinator, type ReplyAuthority } from '../coordinator';
import { type DecisionEventsPort, noDecisionEvents } from '../core/ports';
import { EventBridgeDecisionEvents } from './events';
import { type LockSetup, Transactions, createLocks } from '../locks';
import { readConfig } from './config';
import { TxLog, documentClient } from './log-store';
import { ParticipantQueues } from './queues';
import { atInvocationEnd, metricsPort, traced } from './telemetry';
import { Workflow } from './workflow';

export const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'dtc' });

let coordinator: Coordinator | undefined;
let lockSetup: LockSetup | undefined;
let log: TxLog | undefined;
let queues: ParticipantQueues | undefined;
let workflow: Workflow | undefined;
let events: DecisionEventsPort | undefined;

function clients(): { log: TxLog; queues: ParticipantQueues; workflow: Workflow } {
  const config = readConfig();
  log ??= new TxLog(documentClient(traced(new DynamoDBClient({}))), config.txTable);
  queues ??= new ParticipantQueues(config.participantQueues, traced(new SQSClient({})), config.participantDeadLetterQueues, config.replyDeadLetterQueueUrl);
  workflow ??= new Workflow(traced(new SFNClient({})));
  return { log, queues, workflow };
}

/** The lock service and the deadlock detector, on the same clients; long waits detect in process. */
export function getLocks(): LockSetup {
  if (!lockSetup) {
    const config = readConfig();
    if (!config.lockTable) throw new Error('LOCK_TABLE is not set for this function');
    const coordinator = getCoordinator();
    lockSetup = createLocks({
      lockTable: config.lockTable,
      transactions: new Transactions(clients().log, coordinator),
      dynamodb: traced(new DynamoDBClient({})),
      logger,
    });
  }
  return lockSetup;
}

/**
 * Decision events to the bus DECISION_EVENT_BUS names (off without it), published when each
 * invocation's work is done. One per process: on the embedded stack every handler shares it, and
 * each invocation's end flushes whatever is waiting by then, its own events included.
 */
export function getDecisionEvents(): DecisionEventsPort {
  if (!events) {
    const bus = readConfig().decisionEventBus;
    events = bus === undefined ? noDecisionEvents : new EventBridgeDecisionEvents(traced(new EventBridgeClient({})), bus, metricsPort, logger);
    const port = events;
    atInvocationEnd(() => port.flush());
  }
  return events;
}

export function getCoordinator(): Coordinator {
  if (!coordinator) {
    const config = readConfig();
    const { log, queues, workflow } = clients();
    const instance: Coordinator = new Coordinator({
      config,
      log,
      queues,
      workflow,
      metrics: metricsPort,
      events: getDecisionEvents(),
      // The coordinator's declared-resource locks: built on first use, after the coordinator exists.
      get locks() {
        return getLocks().locks;
      },
    });
    coordinator = instance;
  }
  return coordinator;
}

/** The participants' queues (and the reply dead-letter queue), for the reply function's refusals. */
export function getQueues(): ParticipantQueues {
  return clients().queues;
}

/** The reply function's authority: reply queue ARN -> the participant it belongs to. */
export function getReplyAuthority(): ReplyAuthority {
  const config = readConfig();
  const arns = config.replyQueueArns ?? {};
  return {
    owners: Object.fromEntries(Object.entries(arns).map(([service, arn]) => [arn, service])),
    ...(config.participantSenderIds ? { senders: config.participantSenderIds } : {}),
  };
}

export function getSupervisorDeps(): { log: TxLog; workflow: Workflow; stateMachineArn: string } {
  const config = readConfig();
  if (!config.stateMachineArn) throw new Error('STATE_MACHINE_ARN is not set for this function');
  const { log, workflow } = clients();
  return { log, workflow, stateMachineArn: config.stateMachineArn };
}
