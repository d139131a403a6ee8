// Where a participant in doubt reads the coordinator's decision: the coordinator's API, which shows
// it the outcome only (participants have no access to the log table). The answer is
// src/core/recovery.ts's `decisionOf` (presumed abort: no record means ABORT); it throws when it
// cannot tell, so the caller asks again later.
import { decisionOf, type DecisionAnswer } from '../core/recovery';
import { type DecisionRouteOptions, decisionRoute } from './decision-route';

export type { DecisionAnswer } from '../core/recovery';

export interface DecisionSource {
  /** COMMIT or ABORT once decided, PENDING before; throws when the answer is unknown (ask again). */
  read(txId: string): Promise<DecisionAnswer>;
}

export type ApiDecisionsOptions = DecisionRouteOptions;

/**
 * Asks `GET /transactions/{id}/decision`, which shows a participant the outcome only. The
 * coordinator's own 404 for this transaction is presumed abort; any other answer throws.
 */
export function apiDecisions(options: ApiDecisionsOptions): DecisionSource {
  const read = decisionRoute(options);
  return {
    async read(txId) {
      return decisionOf(await read(txId));
    },
  };
}
