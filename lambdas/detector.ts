// The deadlock detector, on a schedule (EventBridge, 1 minute; every second on the local stack) or
// invoked with {"trigger":"on-demand"}. Long lock waits run the same code in their own process.
// See src/locks/detector.ts and docs/concurrency.md.
import { z } from 'zod';
import { getLocks, logger } from '../src/aws/runtime';
import { withTelemetry } from '../src/aws/telemetry';

const onDemand = z.object({ trigger: z.literal('on-demand') });

export const handler = withTelemetry('detector', async (event: unknown) => {
  // Anything else is EventBridge's scheduled event.
  const trigger = onDemand.safeParse(event).success ? 'on-demand' : 'schedule';
  const report = await getLocks().detector.run(trigger);
  if (report.resolved.length > 0 || report.inCycles > 0) {
    logger.warn('deadlocks found', { trigger, inCycles: report.inCycles, resolved: report.resolved.map((r) => ({ victim: r.victim, cycle: r.cycle })), skipped: report.skipped });
  }
  return {
    waitingItems: report.waitingItems,
    nodes: report.nodes,
    edges: report.edges,
    resolved: report.resolved.length,
    skipped: report.skipped,
    elapsedMs: report.elapsedMs,
  };
});
