// The demo shop on the embedded stack: its tables, seed data, one consumer per service, and
// read-only views on the local API (`/demo/...`). Not part of the coordinator's CDK app: the shop
// stands for the users' own services, which live outside it.
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { createDemoTables, seedDemo, startDemoShop, type DemoShop } from '../demo';
import type { LocalStack } from './stack';

export interface RunningDemo {
  shop: DemoShop;
  tables: Record<string, string>;
  stop(): Promise<void>;
}

export async function startDemo(stack: LocalStack, options: { prefix?: string; services?: string[] } = {}): Promise<RunningDemo> {
  const tableOptions = options.prefix === undefined ? {} : { prefix: options.prefix };
  await createDemoTables(stack.dynamodb, tableOptions);
  await seedDemo(stack.dynamodb, tableOptions);
  const shop = startDemoShop({
    ...tableOptions,
    queueUrls: stack.outputs.participantQueues,
    replyQueueUrl: stack.outputs.replyQueueUrl,
    dynamodb: stack.dynamodb,
    sqs: stack.sqs,
    ...(options.services ? { services: options.services } : {}),
  });
  const view = (read: (id: string) => Promise<unknown>) => async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> => {
    const id = event.pathParameters?.id ?? '';
    const found = await read(id);
    return found
      ? { statusCode: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(found) }
      : { statusCode: 404, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error: { code: 'NotFound', message: `no such record: ${id}` } }) };
  };
  stack.api.addRoute({ method: 'GET', resource: '/demo/inventory/{id}', invoke: view((id) => shop.getInventory(id)) });
  stack.api.addRoute({ method: 'GET', resource: '/demo/accounts/{id}', invoke: view((id) => shop.getAccount(id)) });
  stack.api.addRoute({ method: 'GET', resource: '/demo/orders/{id}', invoke: view((id) => shop.getOrder(id)) });
  stack.api.addRoute({ method: 'GET', resource: '/demo/shipments/{id}', invoke: view((id) => shop.getShipment(id)) });
  stack.api.addRoute({
    method: 'GET',
    resource: '/demo/totals',
    invoke: async () => ({ statusCode: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(await shop.demoTotals()) }),
  });
  return { shop, tables: shop.tables, stop: () => shop.stop() };
}
