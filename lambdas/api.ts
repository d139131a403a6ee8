// The REST API (API Gateway, Lambda proxy integration): start, inspect and list transactions.
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { BadCursorError } from '../src/core/cursor';
import { systemClock, systemSleep } from '../src/aws/system';
import { readConfig } from '../src/aws/config';
import { getCoordinator, getLocks, logger } from '../src/aws/runtime';
import { LockApi } from '../src/locks/api';
import { withTelemetry } from '../src/aws/telemetry';
import { z } from 'zod';
import { serviceName, txId as txIdSchema } from '../src/core/messages';
import { MAX_BODY_BYTES, type FieldError, type TxView, toView } from '../src/core/transaction';

const json = (statusCode: number, body: unknown, headers: Record<string, string> = {}): APIGatewayProxyResult => ({
  statusCode,
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

const problem = (statusCode: number, code: string, message: string, fields?: FieldError[]) =>
  json(statusCode, { error: { code, message, ...(fields ? { fields } : {}) } });

/**
 * The routes, by API Gateway's resource template: the REST API matches the path and extracts its
 * parameters before the function runs (cdk/api.ts), so the function only looks its route up.
 */
const routes: Record<string, (event: APIGatewayProxyEvent, context?: Context) => Promise<APIGatewayProxyResult>> = {
  'POST /transactions': startTransaction,
  'GET /transactions': listTransactions,
  'GET /transactions/{id}': getTransaction,
  'GET /transactions/{id}/decision': getDecision,
  'POST /transactions/{id}/abort': abortTransaction,
  'POST /transactions/{id}/release': releaseParticipant,
  'POST /locks/{resource}': (event) => lockRoute(event, true, (api, resource, body) => api.acquire(resource, body)),
  'PUT /locks/{resource}': (event) => lockRoute(event, true, (api, resource, body) => api.renew(resource, body)),
  'DELETE /locks/{resource}': (event) => lockRoute(event, true, (api, resource, body, q) => api.release(resource, q.owner ?? undefined, body)),
  'GET /locks/{resource}': (event) => lockRoute(event, false, (api, resource) => api.inspect(resource)),
  'GET /deadlocks': (event) => lockRoute(event, false, (api, _resource, _body, q) => api.deadlocks(q.limit ?? undefined, q.cursor ?? undefined)),
};

export const handler = withTelemetry('api', async (event: APIGatewayProxyEvent, context?: Context): Promise<APIGatewayProxyResult> => {
  try {
    const route = `${event.httpMethod} ${event.resource}`;
    const serve = routes[route];
    return serve ? await serve(event, context) : problem(404, 'NotFound', `no route ${route}`);
  } catch (err) {
    logger.error('request failed', { error: err as Error, path: event.path });
    return problem(500, 'InternalError', 'the request could not be completed; it is safe to retry with the same Idempotency-Key');
  }
});

/**
 * The request's JSON body (base64 decoded when the gateway encoded it): 413 over MAX_BODY_BYTES, 400
 * when it is not JSON; an `optional` body may be empty (undefined).
 */
function readJson(event: APIGatewayProxyEvent, optional: boolean): { body: unknown } | { answer: APIGatewayProxyResult } {
  const raw = event.body === null || event.body === undefined ? '' : event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
  if (Buffer.byteLength(raw, 'utf8') > MAX_BODY_BYTES) return { answer: problem(413, 'PayloadTooLarge', `the body must be at most ${MAX_BODY_BYTES} bytes`) };
  if (optional && raw.trim() === '') return { body: undefined };
  try {
    return { body: JSON.parse(raw) as unknown };
  } catch {
    return { answer: problem(400, 'MalformedBody', 'the body must be a JSON object', [{ field: '(body)', message: 'is not valid JSON' }]) };
  }
}

async function startTransaction(event: APIGatewayProxyEvent, context?: Context): Promise<APIGatewayProxyResult> {
  const read = readJson(event, false);
  if ('answer' in read) return read.answer;
  const { body } = read;
  const deep = tooDeep(body, MAX_JSON_DEPTH);
  if (deep !== undefined) {
    return problem(400, 'InvalidRequest', 'the request has invalid fields', [{ field: deep, message: `is nested deeper than ${MAX_JSON_DEPTH} levels` }]);
  }
  const key = header(event, 'idempotency-key');
  if (key !== undefined && !/^[\x21-\x7e]{1,128}$/.test(key)) {
    return problem(400, 'InvalidIdempotencyKey', 'Idempotency-Key must be 1-128 visible ASCII characters', [
      { field: 'Idempotency-Key', message: 'must be 1-128 visible ASCII characters' },
    ]);
  }
  const wait = preferWait(event);
  if (wait && 'error' in wait) return problem(400, 'InvalidRequest', wait.error, [{ field: 'Prefer', message: wait.error }]);
  const remainingMs = context ? () => context.getRemainingTimeInMillis() : undefined;
  const outcome = await getCoordinator().start(body, key, remainingMs);
  switch (outcome.kind) {
    case 'gone':
      return json(410, { error: { code: 'IdempotencyKeyExpired', message: `Idempotency-Key named transaction ${outcome.txId}, which finished and has been forgotten` }, txId: outcome.txId });
    case 'invalid':
      return problem(400, 'InvalidRequest', 'the request has invalid fields', outcome.errors);
    case 'idempotency-conflict':
      return problem(422, 'IdempotencyKeyReused', `Idempotency-Key was used for another request (transaction ${outcome.txId})`);
    case 'started': {
      const self = `/transactions/${outcome.txId}`;
      const headers = { location: self, ...(outcome.replayed ? { 'idempotent-replayed': 'true' } : {}) };
      if (wait !== undefined) {
        // `Prefer: wait=N`: the transaction once decided (200), or 202 as without it when N runs out.
        const view = await waitForDecision(outcome.txId, wait.seconds, context);
        if (view && view.decision) return json(200, { ...view, links: { self } }, { ...headers, 'preference-applied': `wait=${wait.seconds}` });
      }
      return json(202, { txId: outcome.txId, status: outcome.status, links: { self } }, headers);
    }
  }
}

/**
 * How deep a start request's JSON may nest (the body counts as one level). Hashing and storing the
 * request walk it recursively: a body nested thousands of levels deep (a few KiB) would overflow
 * the stack there, a 500 instead of a 400.
 */
export const MAX_JSON_DEPTH = 64;

/** The field (at most three levels of its path) under which `value` nests deeper than `max`; iterative. */
function tooDeep(value: unknown, max: number): string | undefined {
  const stack: { node: unknown; depth: number; path: string[] }[] = [{ node: value, depth: 1, path: [] }];
  while (stack.length > 0) {
    const { node, depth, path } = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    if (depth > max) return path.slice(0, 3).join('.') || '(body)';
    for (const [k, v] of Object.entries(node)) stack.push({ node: v, depth: depth + 1, path: [...path, k] });
  }
  return undefined;
}

/** The longest `Prefer: wait` / `?wait` honoured: a waiting request holds a Lambda (docs/performance.md). */
export const MAX_WAIT_SECONDS = 10;

/** `Prefer: wait=N` (RFC 7240): N seconds, capped at MAX_WAIT_SECONDS; another preference is ignored, a malformed wait is an error. */
function preferWait(event: APIGatewayProxyEvent): { seconds: number } | { error: string } | undefined {
  const prefer = header(event, 'prefer');
  if (prefer === undefined) return undefined;
  const match = /(?:^|[,;\s])wait\s*=\s*([^,;\s]*)/i.exec(prefer);
  if (!match) return undefined;
  const seconds = Number(match[1]);
  if (!/^\d+$/.test(match[1] ?? '') || !Number.isInteger(seconds)) return { error: 'Prefer: wait must be a whole number of seconds' };
  return { seconds: Math.min(seconds, MAX_WAIT_SECONDS) };
}

/** Time kept back from a waiting invocation's remaining time, for the last read and the answer. */
export const WAIT_RESERVE_MS = 1_000;

/**
 * Poll the record (consistent reads, backing off from 25 ms to 250 ms) until it is decided or
 * `seconds` have passed (the last pause is cut to end then), but never past the invocation's
 * remaining time less WAIT_RESERVE_MS: a wait must end in an answer, not in the function's timeout.
 */
async function waitForDecision(txId: string, seconds: number, context?: Context) {
  const now = systemClock();
  const until = Math.min(now + seconds * 1000, context ? now + context.getRemainingTimeInMillis() - WAIT_RESERVE_MS : Infinity);
  let pause = 25;
  for (;;) {
    const view = await getCoordinator().get(txId);
    const left = until - systemClock();
    if (!view || view.decision || left <= 0) return view;
    await systemSleep(Math.min(pause, left));
    pause = Math.min(250, pause * 2);
  }
}

async function getTransaction(event: APIGatewayProxyEvent, context?: Context): Promise<APIGatewayProxyResult> {
  const id = event.pathParameters?.id ?? '';
  if (!txIdSchema.safeParse(id).success) {
    return problem(404, 'NotFound', `no transaction ${id}`);
  }
  const q = event.queryStringParameters ?? {};
  let view;
  if (q.wait !== undefined) {
    if (!/^\d+$/.test(q.wait)) return problem(400, 'InvalidRequest', 'the query has invalid parameters', [{ field: 'wait', message: 'must be a whole number of seconds' }]);
    view = await waitForDecision(id, Math.min(Number(q.wait), MAX_WAIT_SECONDS), context);
  } else {
    view = await getCoordinator().get(id);
  }
  return view ? json(200, view) : problem(404, 'NotFound', `no transaction ${id}`);
}

/**
 * A caller that is one of the deployment's participants (by the role it signed with) may act on its
 * own transactions only; other callers are operators, as far as IAM lets them call this route.
 */
async function refuseStranger(caller: string | undefined, txId: string, known?: TxView): Promise<APIGatewayProxyResult | undefined> {
  const service = participantOf(caller, readConfig().participantPrincipals ?? {});
  if (service === undefined) return undefined;
  const view = known ?? (await getCoordinator().get(txId));
  if (view && !view.participants.some((p) => p.service === service)) {
    return problem(403, 'Forbidden', `participant ${service} is not a member of transaction ${txId}`);
  }
  return undefined;
}

/** Who signed the request (IAM): its ARN, else the caller id API Gateway gives. */
const callerOf = (event: APIGatewayProxyEvent): string | undefined => event.requestContext?.identity?.userArn ?? event.requestContext?.identity?.caller ?? undefined;

/** `arn:aws:sts::<acct>:assumed-role/<role>/<session>` or the role's own ARN -> the participant whose role it is. */
export function participantOf(caller: string | undefined, principals: Record<string, string>): string | undefined {
  if (!caller) return undefined;
  const session = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\//.exec(caller);
  for (const [service, arn] of Object.entries(principals)) {
    if (arn === caller) return service;
    const role = /^arn:(aws[a-z-]*):iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/.exec(arn);
    if (session && role && session[2] === role[2] && session[3] === role[3]) return service;
  }
  return undefined;
}

/** What a participant in doubt may see: the outcome, never the other participants' operations or votes. */
async function getDecision(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const id = event.pathParameters?.id ?? '';
  if (!txIdSchema.safeParse(id).success) return problem(404, 'NotFound', `no transaction ${id}`);
  // One read: the membership check and the answer see the same record.
  const view = await getCoordinator().get(id);
  if (!view) return problem(404, 'NotFound', `no transaction ${id}`);
  const refused = await refuseStranger(callerOf(event), id, view);
  if (refused) return refused;
  return json(200, { txId: view.txId, status: view.status, createdAt: view.createdAt, decision: view.decision?.outcome ?? 'PENDING' });
}

/**
 * POST /transactions/{id}/abort: 202 with the transaction when ABORT is the decision (made now or
 * before), 409 with the decision when it committed or every YES is in, 404 unknown id, 400 bad id.
 */
async function abortTransaction(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const id = event.pathParameters?.id ?? '';
  if (!txIdSchema.safeParse(id).success) return problem(400, 'InvalidRequest', 'the transaction id is malformed', [{ field: 'id', message: 'must be 8-64 letters, digits or dashes' }]);
  const read = readJson(event, true);
  if ('answer' in read) return read.answer;
  let reason = 'aborted on request';
  if (read.body !== undefined) {
    const { body } = read;
    const given = (body as { reason?: unknown } | null)?.reason;
    if (typeof body !== 'object' || body === null || Array.isArray(body) || (given !== undefined && (typeof given !== 'string' || given.length > 200))) {
      return problem(400, 'InvalidRequest', 'the body has invalid fields', [{ field: 'reason', message: 'must be a string of at most 200 characters' }]);
    }
    if (typeof given === 'string' && given.trim() !== '') reason = `aborted on request: ${given}`;
  }
  const caller = callerOf(event);
  const refused = await refuseStranger(caller, id);
  if (refused) return refused;
  const outcome = await getCoordinator().abort(id, caller ? `${reason} (by ${caller})` : reason);
  if (outcome.kind === 'unknown') return problem(404, 'NotFound', `no transaction ${id}`);
  const transaction = toView(outcome.record);
  if (outcome.kind === 'committed') {
    return json(409, { error: { code: 'AlreadyCommitted', message: `transaction ${id} ${outcome.record.decision === 'COMMIT' ? 'committed' : 'has every YES: it can only commit'}` }, decision: 'COMMIT', transaction });
  }
  return json(202, { decidedNow: outcome.decidedNow, transaction });
}

const releaseBody = z.strictObject({
  participant: serviceName,
  operator: z.string().trim().min(1, 'must name the operator').max(200, 'must be at most 200 characters'),
  reason: z.string().trim().min(1, 'must say why').max(200, 'must be at most 200 characters'),
});

/**
 * POST /transactions/{id}/release `{"participant","operator","reason"}`: an operator stops phase
 * two's wait for a participant that is being retired for good, recorded on the transaction (who,
 * when, why). 200 with the view (its `releases`), 404 unknown id, 400 bad body or a participant that
 * is not a member, 409 not decided yet or the participant owes no acknowledgement (acknowledged,
 * released before, or finished). For operators only: a participant's role is refused (403).
 */
async function releaseParticipant(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const id = event.pathParameters?.id ?? '';
  if (!txIdSchema.safeParse(id).success) return problem(404, 'NotFound', `no transaction ${id}`);
  const caller = callerOf(event);
  const service = participantOf(caller, readConfig().participantPrincipals ?? {});
  if (service !== undefined) return problem(403, 'Forbidden', `participant ${service} may not release participants: operators only`);
  const read = readJson(event, false);
  if ('answer' in read) return read.answer;
  const parsed = releaseBody.safeParse(read.body);
  if (!parsed.success) {
    return problem(400, 'InvalidRequest', 'the body has invalid fields', parsed.error.issues.map((i) => ({ field: i.path.join('.') || '(body)', message: i.message })));
  }
  const { participant, operator, reason } = parsed.data;
  // The signed caller is recorded beside the name the operator gives.
  const outcome = await getCoordinator().release(id, participant, caller ? `${operator} (${caller})` : operator, reason);
  switch (outcome.kind) {
    case 'unknown':
      return problem(404, 'NotFound', `no transaction ${id}`);
    case 'not-member':
      return problem(400, 'InvalidRequest', 'the body has invalid fields', [{ field: 'participant', message: `${participant} is not a member of transaction ${id}` }]);
    case 'refused':
      return json(409, { error: { code: 'NotAwaited', message: outcome.why }, transaction: toView(outcome.record) });
    case 'released':
      return json(200, toView(outcome.record));
  }
}

async function listTransactions(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const q = event.queryStringParameters ?? {};
  const errors: FieldError[] = [];
  const limit = q.limit === undefined ? 20 : Number(q.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) errors.push({ field: 'limit', message: 'must be a whole number from 1 to 100' });
  if (errors.length > 0) return problem(400, 'InvalidRequest', 'the query has invalid parameters', errors);
  try {
    const page = await getCoordinator().list(limit, q.cursor);
    return json(200, page);
  } catch (err) {
    if (err instanceof BadCursorError) return problem(400, 'InvalidRequest', err.message, [{ field: 'cursor', message: err.message }]);
    throw err;
  }
}

let lockApi: LockApi | undefined;

/** The standalone lock service and the deadlock records (src/locks/api.ts). */
async function lockRoute(
  event: APIGatewayProxyEvent,
  takesBody: boolean,
  call: (api: LockApi, resource: string, body: unknown, query: Record<string, string | undefined>) => Promise<{ status: number; body: unknown }>,
): Promise<APIGatewayProxyResult> {
  const { locks } = getLocks();
  lockApi ??= new LockApi(locks, locks.store);
  let body: unknown;
  if (takesBody) {
    const read = readJson(event, true);
    if ('answer' in read) return read.answer;
    body = read.body;
  }
  const answer = await call(lockApi, event.pathParameters?.resource ?? '', body, event.queryStringParameters ?? {});
  return json(answer.status, answer.body);
}

function header(event: APIGatewayProxyEvent, name: string): string | undefined {
  const found = Object.entries(event.headers ?? {}).find(([k]) => k.toLowerCase() === name);
  return found?.[1] ?? undefined;
}
