// The participant as a Lambda behind an SQS event source mapping (ReportBatchItemFailures):
// a failed record is retried by SQS and, past maxReceiveCount, dead-lettered; the batch never crashes.
import { Logger } from '@aws-lambda-powertools/logger';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { BarrierBusyError, ProtocolViolationError } from '../core/barrier';
import { MalformedMessageError, type ParticipantLogger, type RunnerOptions, createRunner } from './runner';

export function sqsHandler(options: RunnerOptions): (event: SQSEvent) => Promise<SQSBatchResponse> {
  const logger: ParticipantLogger = options.logger ?? new Logger({ serviceName: options.participant.service });
  const runner = createRunner({ ...options, logger });
  return async (event) => {
    const failures: SQSBatchResponse['batchItemFailures'] = [];
    await Promise.all(
      event.Records.map(async (record) => {
        try {
          await runner.handleBody(record.body);
        } catch (err) {
          failures.push({ itemIdentifier: record.messageId });
          const messageId = record.messageId;
          if (err instanceof MalformedMessageError) logger.error('malformed participant message: left for the dead-letter queue', { messageId, reason: err.message });
          else if (err instanceof ProtocolViolationError) logger.error('PROTOCOL VIOLATION: message not acknowledged, it will be dead-lettered', { messageId, reason: err.message });
          else if (err instanceof BarrierBusyError) logger.info('another prepare run holds the barrier; retrying later', { messageId });
          else logger.error('participant message failed; SQS will redeliver it', { messageId, error: err as Error });
        }
      }),
    );
    return { batchItemFailures: failures };
  };
}
