// Invoked by every waitForTaskToken task of the state machine (Prepare, Commit, Abort), and by its
// last step, Finalize. The body is `dispatchTask` (src/coordinator.ts), which the simulation runs too.
import { getCoordinator, logger } from '../src/aws/runtime';
import { withTelemetry } from '../src/aws/telemetry';
import { dispatchTask } from '../src/coordinator';

export const handler = withTelemetry('dispatch', (event: unknown): Promise<void> => dispatchTask(getCoordinator(), event, logger));
