// The recovery sweeper, on a schedule (EventBridge, 1 minute; a few seconds on the local stack):
// resumes open transactions whose execution is gone. See src/recovery.ts.
import type { Context } from 'aws-lambda';
import { readConfig } from '../src/aws/config';
import { TxLog, documentClient } from '../src/aws/log-store';
import { logger } from '../src/aws/runtime';
import { metricsPort, withTelemetry } from '../src/aws/telemetry';
import { Workflow } from '../src/aws/workflow';
import { METRIC } from '../src/metrics';
import { readSweeperConfig, sweep, type SweepDeps } from '../src/recovery';

let deps: SweepDeps | undefined;

export const handler = withTelemetry('sweeper', async (_event: unknown, context?: Context): Promise<{ scanned: number; examined: number; resumed: number }> => {
  deps ??= { log: new TxLog(documentClient(), readConfig().txTable), workflow: new Workflow() };
  const report = await sweep(deps, { ...readSweeperConfig(), ...(context ? { remainingMs: () => context.getRemainingTimeInMillis() } : {}) });
  // The in-doubt gauge the `transactions-in-doubt` alarm reads (docs/deploy.md): open transactions
  // that stopped moving for longer than the staleness bound, 0 included, on every run.
  metricsPort.count(METRIC.TransactionsInDoubt, report.scanned);
  let resumed = 0;
  for (const o of report.outcomes) {
    if (o.kind === 'resumed') {
      resumed++;
      logger.warn('transaction recovered', { ...o });
    } else if (o.kind === 'failed') {
      logger.error('recovery failed; the next run tries again', { ...o });
    }
  }
  return { scanned: report.scanned, examined: report.examined, resumed };
});
