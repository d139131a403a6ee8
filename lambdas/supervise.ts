// The Supervise step of a group's supervisor (cdk/workflow.ts): one run over the group's open
// transactions; its output is the execution's next state. The body is `superviseRun`
// (src/supervisor.ts), which the simulation runs too.
import { getCoordinator, getSupervisorDeps, logger } from '../src/aws/runtime';
import { metricsPort, withTelemetry } from '../src/aws/telemetry';
import { SupervisorStateError, superviseRun, supervisorState, type SupervisorRun } from '../src/supervisor';

export const handler = withTelemetry('supervise', async (event: unknown): Promise<SupervisorRun> => {
  const parsed = supervisorState.safeParse(event);
  // Only the state machine calls this function: a malformed state is a deployment bug that no retry
  // fixes, so it ends the execution (cdk/workflow.ts routes this error to `Malformed`); the sweeper
  // starts a new generation with a well-formed state.
  if (!parsed.success) throw new SupervisorStateError(`supervisor state is malformed: ${parsed.error.message}`);
  logger.appendKeys({ group: parsed.data.group });
  try {
    const run = await superviseRun(getCoordinator(), { ...getSupervisorDeps(), metrics: metricsPort }, parsed.data);
    if (run.report.aborted > 0 || run.report.inDoubt > 0 || run.report.parked > 0) logger.warn('supervision acted', { ...run.report });
    return run;
  } finally {
    logger.resetKeys();
  }
});
