// Consumes the coordinator's reply queue (votes and acknowledgements) in batches. The body is
// `replyBatch` (src/coordinator.ts), which the simulation runs too.
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { getCoordinator, logger } from '../src/aws/runtime';
import { withTelemetry } from '../src/aws/telemetry';
import { replyBatch } from '../src/coordinator';

export const handler = withTelemetry('reply', (event: SQSEvent): Promise<SQSBatchResponse> => replyBatch(getCoordinator(), event.Records, logger));
