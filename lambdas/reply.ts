// Consumes the participants' reply queues (votes and acknowledgements) in batches: one event source
// mapping per queue, and the queue a message came on (`eventSourceARN`) names its sender. The body
// is `replyBatch` (src/coordinator.ts, each message through Powertools' BatchProcessor, failures
// reported per message: ReportBatchItemFailures), which the simulation runs too.
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { getCoordinator, getQueues, getReplyAuthority, logger } from '../src/aws/runtime';
import { metricsPort, withTelemetry } from '../src/aws/telemetry';
import { replyBatch } from '../src/coordinator';

export const handler = withTelemetry('reply', (event: SQSEvent): Promise<SQSBatchResponse> => replyBatch(getCoordinator(), getQueues(), getReplyAuthority(), event.Records, logger, metricsPort));
