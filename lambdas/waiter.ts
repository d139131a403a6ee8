// `GET /transactions/{id}` (and its `?wait=N`): a function of its own, so waiting callers hold only
// its concurrency (capped by `waitConcurrency`), never the api function's starts or the reply
// function's votes. The body is the api function's route (lambdas/api.ts).
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { handler as api } from './api';

export const handler = (event: APIGatewayProxyEvent, context?: unknown): Promise<APIGatewayProxyResult> => {
  if (`${event.httpMethod} ${event.resource}` !== 'GET /transactions/{id}') {
    return Promise.resolve({ statusCode: 404, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error: { code: 'NotFound', message: `no route ${event.httpMethod} ${event.resource} on the waiter` } }) });
  }
  return (api as (e: APIGatewayProxyEvent, c?: unknown) => Promise<APIGatewayProxyResult>)(event, context);
};
