// Invoked by every waitForTaskToken task of the state machine (Prepare, Commit, Abort), and by its
// last step, Finalize.
import { z } from 'zod';
import { getCoordinator, logger } from '../src/aws/runtime';
import { withTelemetry } from '../src/aws/telemetry';

const dispatchEvent = z.union([
  z.object({
    txId: z.string().min(1),
    phase: z.enum(['PREPARE', 'COMMIT', 'ABORT']),
    taskToken: z.string().min(1),
  }),
  // The Finalize step, last of every execution: a plain invocation, no task token.
  z.object({
    txId: z.string().min(1),
    phase: z.literal('FINALIZE'),
    result: z.object({
      from: z.enum(['COMMITTING', 'ABORTING']),
      final: z.enum(['COMMITTED', 'ABORTED']),
      expiresAt: z.number().int().positive(),
    }),
  }),
]);

export const handler = withTelemetry('dispatch', async (event: unknown): Promise<void> => {
  const parsed = dispatchEvent.safeParse(event);
  // Only the state machine calls this function: a malformed event is a deployment bug. Failing
  // the task lets the state machine's Catch decide (abort in Prepare, retry in phase two).
  if (!parsed.success) throw new Error(`dispatch event is malformed: ${parsed.error.message}`);
  // Every log line of this invocation names the transaction; the keys go when it ends, so that a
  // warm container (or the embedded stack, where all handlers share one logger) never carries them on.
  logger.appendKeys({ txId: parsed.data.txId, phase: parsed.data.phase });
  try {
    if (parsed.data.phase === 'FINALIZE') {
      const outcome = await getCoordinator().finalize(parsed.data.txId, parsed.data.result);
      if (outcome.releaseError) logger.warn('finalized, but could not release the coordinator-held locks; their leases will free them', { error: outcome.releaseError });
      logger.debug('finalized', { status: outcome.status, finalized: outcome.finalized, released: outcome.released });
      return;
    }
    await getCoordinator().dispatch(parsed.data);
    logger.debug('dispatched');
  } finally {
    logger.resetKeys();
  }
});
