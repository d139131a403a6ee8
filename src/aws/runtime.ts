// Wiring shared by the Lambda handlers: one Coordinator per process, built on first use from the
// environment with the SDK's default clients (which honour the AWS_ENDPOINT_URL_* variables).
import { Logger } from '@aws-lambda-powertools/logger';
import { Coordinator } from '../coordinator';
import { readConfig } from './config';
import { TxLog, documentClient } from './log-store';
import { ParticipantQueues } from './queues';
import { Workflow } from './workflow';

export const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'dtc' });

let coordinator: Coordinator | undefined;

export function getCoordinator(): Coordinator {
  if (!coordinator) {
    const config = readConfig();
    coordinator = new Coordinator({
      config,
      log: new TxLog(documentClient(), config.txTable),
      queues: new ParticipantQueues(config.participantQueues),
      workflow: new Workflow(),
    });
  }
  return coordinator;
}
