// Where a participant in doubt reads the coordinator's decision: the coordinator's API, which shows
// it the outcome only (participants have no access to the log table). The answer is
// src/core/recovery.ts's `decisionOf` (presumed abort: no record means ABORT); it throws when it
// cannot tell, so the caller asks again later.
import { decisionOf, type DecisionAnswer } from '../core/recovery';
import { TX_STATUSES, type TxStatus } from '../core/transaction';

export type { DecisionAnswer } from '../core/recovery';

export interface DecisionSource {
  /** COMMIT or ABORT once decided, PENDING before; throws when the answer is unknown (ask again). */
  read(txId: string): Promise<DecisionAnswer>;
}

const isStatus = (value: unknown): value is TxStatus => typeof value === 'string' && (TX_STATUSES as readonly string[]).includes(value);

export interface ApiDecisionsOptions {
  /** The API's base URL, e.g. `https://abc.execute-api.eu-west-1.amazonaws.com/v1` or the local `http://127.0.0.1:4000`. */
  baseUrl: string;
  /** The API signs with IAM on AWS: pass a fetch that signs (SigV4). Default: global fetch. */
  fetch?: typeof fetch;
  /** Per request; default 5 s. */
  timeoutMs?: number;
}

/**
 * Asks `GET /transactions/{id}/decision`, which shows a participant the outcome only. 404 for this
 * transaction is presumed abort; any other answer throws.
 */
export function apiDecisions(options: ApiDecisionsOptions): DecisionSource {
  const doFetch = options.fetch ?? fetch;
  const base = options.baseUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 5_000;
  return {
    async read(txId) {
      const res = await doFetch(`${base}/transactions/${encodeURIComponent(txId)}/decision`, { signal: AbortSignal.timeout(timeoutMs) });
      const body = (await res.json().catch(() => undefined)) as { status?: unknown; error?: { code?: unknown; message?: unknown } } | undefined;
      if (res.status === 404) {
        // Only the coordinator's own "no such transaction" is presumed abort. A 404 from a wrong
        // URL or a missing route must not abort a transaction that may be committing.
        if (body?.error?.code === 'NotFound' && body.error.message === `no transaction ${txId}`) return decisionOf(undefined);
        throw new Error(`GET /transactions/${txId}/decision: 404 that is not the coordinator's (${JSON.stringify(body)}); check baseUrl`);
      }
      if (res.status !== 200 || !isStatus(body?.status)) throw new Error(`GET /transactions/${txId}/decision answered ${res.status}: ${JSON.stringify(body)}`);
      return decisionOf({ status: body.status });
    },
  };
}
