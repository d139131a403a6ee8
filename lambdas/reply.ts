// Consumes the coordinator's reply queue (votes and acknowledgements) in batches.
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { parseMessage, replyMessage } from '../src/core/messages';
import { getCoordinator, logger } from '../src/aws/runtime';
import { withTelemetry } from '../src/aws/telemetry';

export const handler = withTelemetry('reply', async (event: SQSEvent): Promise<SQSBatchResponse> => {
  const coordinator = getCoordinator();
  const failures: SQSBatchResponse['batchItemFailures'] = [];
  await Promise.all(
    event.Records.map(async (record) => {
      const parsed = parseMessage(replyMessage, record.body);
      if (!parsed.ok) {
        // Never crash the batch: report the item, which SQS redelivers until its DLQ takes it.
        logger.error('malformed reply message', { messageId: record.messageId, reason: parsed.reason });
        failures.push({ itemIdentifier: record.messageId });
        return;
      }
      try {
        await coordinator.onReply(parsed.value);
      } catch (err) {
        logger.error('reply failed', { messageId: record.messageId, txId: parsed.value.txId, error: err as Error });
        failures.push({ itemIdentifier: record.messageId });
      }
    }),
  );
  return { batchItemFailures: failures };
});
