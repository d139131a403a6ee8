// Wiring shared by the Lambda handlers: one Coordinator per process, built on first use from the
// environment with the SDK's default clients (which honour the AWS_ENDPOINT_URL_* variables).
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import { Logger } from '@aws-lambda-powertools/logger';
import { Coordinator } from '../coordinator';
import { type LockSetup, createLocks } from '../locks';
import { readConfig } from './config';
import { TxLog, documentClient } from './log-store';
import { ParticipantQueues } from './queues';
import { metricsPort, traced } from './telemetry';
import { Workflow } from './workflow';

export const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'dtc' });

let coordinator: Coordinator | undefined;
let lockSetup: LockSetup | undefined;

/** The lock service and the deadlock detector, on the same clients; long waits detect in process. */
export function getLocks(): LockSetup {
  if (!lockSetup) {
    const config = readConfig();
    if (!config.lockTable) throw new Error('LOCK_TABLE is not set for this function');
    lockSetup = createLocks({
      lockTable: config.lockTable,
      txTable: config.txTable,
      dynamodb: traced(new DynamoDBClient({})),
      sfn: traced(new SFNClient({})),
      logger,
    });
  }
  return lockSetup;
}

export function getCoordinator(): Coordinator {
  if (!coordinator) {
    const config = readConfig();
    coordinator = new Coordinator({
      config,
      log: new TxLog(documentClient(traced(new DynamoDBClient({}))), config.txTable),
      queues: new ParticipantQueues(config.participantQueues, traced(new SQSClient({})), config.participantDeadLetterQueues),
      workflow: new Workflow(traced(new SFNClient({}))),
      metrics: metricsPort,
      locks: getLocks().locks,
    });
  }
  return coordinator;
}
