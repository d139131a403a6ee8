// Invoked by every waitForTaskToken task of the state machine (Prepare, Commit, Abort).
import { z } from 'zod';
import { getCoordinator, logger } from '../src/aws/runtime';
import { withTelemetry } from '../src/aws/telemetry';

const dispatchEvent = z.union([
  z.object({
    txId: z.string().min(1),
    phase: z.enum(['PREPARE', 'COMMIT', 'ABORT']),
    taskToken: z.string().min(1),
  }),
  // The ReleaseLocks step after Finalize: a plain invocation, no task token.
  z.object({ txId: z.string().min(1), phase: z.literal('RELEASE') }),
]);

export const handler = withTelemetry('dispatch', async (event: unknown): Promise<void> => {
  const parsed = dispatchEvent.safeParse(event);
  // Only the state machine calls this function: a malformed event is a deployment bug. Failing
  // the task lets the state machine's Catch decide (abort in Prepare, retry in phase two).
  if (!parsed.success) throw new Error(`dispatch event is malformed: ${parsed.error.message}`);
  logger.appendKeys({ txId: parsed.data.txId, phase: parsed.data.phase });
  if (parsed.data.phase === 'RELEASE') await getCoordinator().releaseLocks(parsed.data.txId);
  else await getCoordinator().dispatch(parsed.data);
  logger.debug('dispatched');
});
