// The REST API (API Gateway, Lambda proxy integration): start, inspect and list transactions.
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { BadCursorError } from '../src/aws/cursor';
import { getCoordinator, getLocks, logger } from '../src/aws/runtime';
import { LockApi } from '../src/locks/api';
import { withTelemetry } from '../src/aws/telemetry';
import { txId as txIdSchema } from '../src/core/messages';
import { MAX_BODY_BYTES, type FieldError } from '../src/core/transaction';

const json = (statusCode: number, body: unknown, headers: Record<string, string> = {}): APIGatewayProxyResult => ({
  statusCode,
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

const problem = (statusCode: number, code: string, message: string, fields?: FieldError[]) =>
  json(statusCode, { error: { code, message, ...(fields ? { fields } : {}) } });

export const handler = withTelemetry('api', async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> => {
  try {
    const route = `${event.httpMethod} ${event.resource}`;
    switch (route) {
      case 'POST /transactions':
        return await startTransaction(event);
      case 'GET /transactions':
        return await listTransactions(event);
      case 'GET /transactions/{id}':
        return await getTransaction(event);
      case 'POST /locks/{resource}':
      case 'PUT /locks/{resource}':
      case 'DELETE /locks/{resource}':
      case 'GET /locks/{resource}':
      case 'GET /deadlocks':
        return await lockRoute(route, event);
      default:
        return problem(404, 'NotFound', `no route ${route}`);
    }
  } catch (err) {
    logger.error('request failed', { error: err as Error, path: event.path });
    return problem(500, 'InternalError', 'the request could not be completed; it is safe to retry with the same Idempotency-Key');
  }
});

async function startTransaction(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const raw = event.body === null ? '' : event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
  if (Buffer.byteLength(raw, 'utf8') > MAX_BODY_BYTES) {
    return problem(413, 'PayloadTooLarge', `the body must be at most ${MAX_BODY_BYTES} bytes`);
  }
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    return problem(400, 'MalformedBody', 'the body must be a JSON object', [{ field: '(body)', message: 'is not valid JSON' }]);
  }
  const key = header(event, 'idempotency-key');
  if (key !== undefined && !/^[\x21-\x7e]{1,128}$/.test(key)) {
    return problem(400, 'InvalidIdempotencyKey', 'Idempotency-Key must be 1-128 visible ASCII characters', [
      { field: 'Idempotency-Key', message: 'must be 1-128 visible ASCII characters' },
    ]);
  }
  const outcome = await getCoordinator().start(body, key);
  switch (outcome.kind) {
    case 'invalid':
      return problem(400, 'InvalidRequest', 'the request has invalid fields', outcome.errors);
    case 'idempotency-conflict':
      return problem(422, 'IdempotencyKeyReused', `Idempotency-Key was used for another request (transaction ${outcome.txId})`);
    case 'started': {
      const self = `/transactions/${outcome.txId}`;
      return json(
        202,
        { txId: outcome.txId, status: outcome.status, links: { self } },
        { location: self, ...(outcome.replayed ? { 'idempotent-replayed': 'true' } : {}) },
      );
    }
  }
}

async function getTransaction(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const id = event.pathParameters?.id ?? '';
  if (!txIdSchema.safeParse(id).success) {
    return problem(404, 'NotFound', `no transaction ${id}`);
  }
  const view = await getCoordinator().get(id);
  return view ? json(200, view) : problem(404, 'NotFound', `no transaction ${id}`);
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
async function lockRoute(route: string, event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> {
  const { locks } = getLocks();
  lockApi ??= new LockApi(locks, locks.store);
  const resource = event.pathParameters?.resource ?? '';
  const q = event.queryStringParameters ?? {};
  const raw = event.body === null ? '' : event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
  if (Buffer.byteLength(raw, 'utf8') > MAX_BODY_BYTES) return problem(413, 'PayloadTooLarge', `the body must be at most ${MAX_BODY_BYTES} bytes`);
  let body: unknown;
  if (route !== 'GET /locks/{resource}' && route !== 'GET /deadlocks' && raw !== '') {
    try {
      body = JSON.parse(raw);
    } catch {
      return problem(400, 'MalformedBody', 'the body must be a JSON object', [{ field: '(body)', message: 'is not valid JSON' }]);
    }
  }
  const answer =
    route === 'POST /locks/{resource}'
      ? await lockApi.acquire(resource, body)
      : route === 'PUT /locks/{resource}'
        ? await lockApi.renew(resource, body)
        : route === 'DELETE /locks/{resource}'
          ? await lockApi.release(resource, q.owner ?? undefined, body)
          : route === 'GET /locks/{resource}'
            ? await lockApi.inspect(resource)
            : await lockApi.deadlocks(q.limit ?? undefined, q.cursor ?? undefined);
  return json(answer.status, answer.body);
}

function header(event: APIGatewayProxyEvent, name: string): string | undefined {
  const found = Object.entries(event.headers ?? {}).find(([k]) => k.toLowerCase() === name);
  return found?.[1] ?? undefined;
}
