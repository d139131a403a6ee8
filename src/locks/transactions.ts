// What the lock service and the deadlock detector need from the transactions: a transaction's status
// and age, and the one way anyone outside the vote path ends one: the conditional abort (only while
// a YES is missing), after which whoever decided sends phase two. Coordinator-side (the API's lock
// routes, the detector) that is the Coordinator itself; a participant's lock service goes through
// the API (`GET /transactions/{id}/decision`, `POST /transactions/{id}/abort`): participants need no
// access to the log table or to Step Functions.
import type { AbortOutcome } from '../coordinator';
import type { TxLogPort } from '../core/ports';
import { type DecisionFacts, type DecisionRouteOptions, coordinatorRoute, decisionFacts, decisionRoute, noSuchTransaction } from '../participant/decision-route';

/** What a participant may know of a transaction: the facts the decision route shows. */
export type TxFacts = DecisionFacts;

export interface AbortResult {
  /** True when this call wrote the decision; false when a decision existed already. */
  applied: boolean;
  record: TxFacts | undefined;
}

export interface TransactionPort {
  get(txId: string): Promise<TxFacts | undefined>;
  /** Decide ABORT if the transaction is still PREPARING with a YES missing, and send phase two. */
  abort(txId: string, reason: string): Promise<AbortResult>;
}

/** The coordinator's own: the log for facts, the coordinator's abort for the decision and phase two. */
export class Transactions implements TransactionPort {
  constructor(
    private readonly log: Pick<TxLogPort, 'get'>,
    private readonly aborter: { abort(txId: string, reason: string): Promise<AbortOutcome> },
  ) {}

  get(txId: string): Promise<TxFacts | undefined> {
    return this.log.get(txId);
  }

  async abort(txId: string, reason: string): Promise<AbortResult> {
    const outcome = await this.aborter.abort(txId, reason);
    if (outcome.kind === 'unknown') return { applied: false, record: undefined };
    return { applied: outcome.kind === 'aborted' && outcome.decidedNow, record: outcome.record };
  }
}

export type ApiTransactionsOptions = DecisionRouteOptions;

/** A participant's view: the facts through `GET /transactions/{id}/decision`, the abort through `POST /transactions/{id}/abort`. */
export function apiTransactions(options: ApiTransactionsOptions): TransactionPort {
  const call = coordinatorRoute(options);
  return {
    get: decisionRoute(options),
    async abort(txId, reason) {
      const res = await call(`/transactions/${encodeURIComponent(txId)}/abort`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ reason }),
      });
      if (noSuchTransaction(res, txId, `POST /transactions/${txId}/abort`)) return { applied: false, record: undefined };
      const body = res.body as { decidedNow?: unknown; transaction?: unknown } | undefined;
      const record = decisionFacts(body?.transaction);
      if ((res.status !== 202 && res.status !== 409) || !record) throw new Error(`POST /transactions/${txId}/abort answered ${res.status}: ${JSON.stringify(body)}`);
      return { applied: res.status === 202 && body?.decidedNow === true, record };
    },
  };
}
