// The recovery sweeper, on a schedule (EventBridge, 1 minute; a few seconds on the local stack):
// every group with open transactions gets a running supervisor. See src/recovery.ts.
import type { Context } from 'aws-lambda';
import { getSupervisorDeps, logger } from '../src/aws/runtime';
import { metricsPort, withTelemetry } from '../src/aws/telemetry';
import { METRIC } from '../src/metrics';
import { sweep } from '../src/recovery';

export const handler = withTelemetry('sweeper', async (_event: unknown, context?: Context): Promise<{ scanned: number; groups: number; failed: number }> => {
  const { log, workflow, stateMachineArn } = getSupervisorDeps();
  const report = await sweep({ log, workflow }, { stateMachineArn, ...(context ? { remainingMs: () => context.getRemainingTimeInMillis() } : {}) });
  // A gauge on every run, 0 included, so a missing datapoint means the sweeper did not run: open
  // transactions long past their prepare deadline (decided, and still owed an acknowledgement).
  metricsPort.count(METRIC.TransactionsInDoubt, report.stuck);
  let failed = 0;
  for (const o of report.outcomes) {
    if (o.kind === 'failed') {
      failed++;
      logger.error('could not supervise a group; the next run tries again', { ...o });
    }
  }
  return { scanned: report.scanned, groups: report.groups, failed };
});
