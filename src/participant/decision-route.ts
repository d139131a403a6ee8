// The one client of `GET /transactions/{id}/decision`, which shows a participant a transaction's
// status and nothing else: the in-doubt inquiry (./decisions.ts) and a participant's lock service
// (src/locks/transactions.ts, `apiTransactions`) both read it here, with one timeout and one rule
// for a 404.
import { TX_STATUSES, type TxRecord, type TxStatus } from '../core/transaction';

export type DecisionFacts = Pick<TxRecord, 'txId' | 'status' | 'createdAt'>;

export interface DecisionRouteOptions {
  /** The API's base URL, e.g. `https://abc.execute-api.eu-west-1.amazonaws.com/v1` or the local `http://127.0.0.1:4000`. */
  baseUrl: string;
  /** The API signs with IAM on AWS: pass a fetch that signs (SigV4). Default: global fetch. */
  fetch?: typeof fetch;
  /** Per request; default 5 s. */
  timeoutMs?: number;
}

export const DEFAULT_DECISION_TIMEOUT_MS = 5_000;

const isStatus = (value: unknown): value is TxStatus => typeof value === 'string' && (TX_STATUSES as readonly string[]).includes(value);

/** The facts of a body the route (or the abort route's `transaction`) answered; undefined if it is not one. */
export function decisionFacts(body: unknown): DecisionFacts | undefined {
  const b = body as { txId?: unknown; status?: unknown; createdAt?: unknown } | undefined;
  return b && typeof b.txId === 'string' && isStatus(b.status) && typeof b.createdAt === 'string' ? { txId: b.txId, status: b.status, createdAt: b.createdAt } : undefined;
}

/** What a coordinator route answered: its status and its JSON body (undefined if it sent none). */
export interface RouteAnswer {
  status: number;
  body: unknown;
}

/**
 * Calls a route under `baseUrl` with the options' fetch and per-request timeout, and reads its JSON
 * body: the one place a participant's clients of the coordinator API (this module's route, the
 * abort route of src/locks/transactions.ts) build the URL and the request.
 */
export function coordinatorRoute(options: DecisionRouteOptions): (path: string, init?: Omit<RequestInit, 'signal'>) => Promise<RouteAnswer> {
  const doFetch = options.fetch ?? fetch;
  const base = options.baseUrl.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? DEFAULT_DECISION_TIMEOUT_MS;
  return async (path, init = {}) => {
    const res = await doFetch(`${base}${path}`, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, body: await res.json().catch(() => undefined) };
  };
}

/**
 * True when the coordinator itself answered that it has no transaction `txId`; false for any answer
 * but a 404. A 404 from anywhere else (a wrong URL, a missing route, a proxy) throws (ask again
 * later): it must never pass for "no record", which means presumed abort, and would let a lock
 * service take a lock from a transaction that may still commit.
 */
export function noSuchTransaction({ status, body }: RouteAnswer, txId: string, route: string): boolean {
  if (status !== 404) return false;
  const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  if (error?.code === 'NotFound' && error.message === `no transaction ${txId}`) return true;
  throw new Error(`${route}: 404 that is not the coordinator's (${JSON.stringify(body)}); check baseUrl`);
}

/** Reads the route: the transaction's facts, or undefined when the coordinator has no such transaction (`noSuchTransaction`). */
export function decisionRoute(options: DecisionRouteOptions): (txId: string) => Promise<DecisionFacts | undefined> {
  const call = coordinatorRoute(options);
  return async (txId) => {
    const answer = await call(`/transactions/${encodeURIComponent(txId)}/decision`);
    if (noSuchTransaction(answer, txId, `GET /transactions/${txId}/decision`)) return undefined;
    const { status, body } = answer;
    const facts = decisionFacts(body);
    if (status !== 200 || !facts) throw new Error(`GET /transactions/${txId}/decision answered ${status}: ${JSON.stringify(body)}`);
    return facts;
  };
}
