// The harness's deployed-target path (DTC_TARGET=localstack) without Docker: the embedded stack
// stands in for LocalStack behind one edge endpoint that routes as LocalStack's does (DynamoDB and
// SQS by X-Amz-Target, the REST API under /_aws/execute-api/<id>/<stage>/), and the harness reads a
// cdk-style outputs file. What runs here is the code `npm run test:localstack` runs: outputs
// parsing, API URL rewriting, SigV4 signing, the demo shop on the target's tables and queues,
// polling instead of execution hooks, and cleanup.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalStack } from '../../src/local/stack';
import { startLocalAws } from '../support/aws';
import { orderBody, type Harness } from './harness';
import { startRemoteHarness } from './targets';

const PARTICIPANTS = ['inventory', 'payment', 'shipping', 'order', 'silent'];
let stack: LocalStack;
let edge: { url: string; requests: Map<string, number>; stop(): Promise<void> };
let dir: string;
let h: Harness;

/** One endpoint in front of the embedded services, routing the way LocalStack's edge does. */
async function startEdge(targets: { dynamodb: string; sqs: string; api: string }) {
  const requests = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = req.url ?? '/';
      const target = String(req.headers['x-amz-target'] ?? '');
      const api = /^\/_aws\/execute-api\/[^/]+\/([^/]+)(\/.*)$/.exec(url);
      const [kind, upstream] = api
        ? ['api', `${targets.api}/${api[1]}${api[2]}`]
        : target.startsWith('DynamoDB_')
          ? ['dynamodb', `${targets.dynamodb}${url}`]
          : target.startsWith('AmazonSQS.')
            ? ['sqs', `${targets.sqs}${url}`]
            : ['unknown', ''];
      requests.set(kind, (requests.get(kind) ?? 0) + 1);
      if (!upstream) {
        res.writeHead(404).end();
        return;
      }
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host' && k !== 'content-length')) as Record<string, string>;
      const body = chunks.length ? Buffer.concat(chunks) : undefined;
      fetch(upstream, { method: req.method ?? 'GET', headers, ...(body ? { body } : {}) })
        .then(async (answer) => {
          const payload = Buffer.from(await answer.arrayBuffer());
          res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' }).end(payload);
        })
        .catch(() => res.writeHead(502).end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

beforeAll(async () => {
  ({ stack } = await startLocalAws({ app: true, context: { participants: PARTICIPANTS } }));
  edge = await startEdge({ dynamodb: stack.outputs.endpoints.dynamodb, sqs: stack.outputs.endpoints.sqs, api: stack.outputs.apiUrl });
  dir = await mkdtemp(path.join(tmpdir(), 'dtc-outputs-'));
  const outputsFile = path.join(dir, 'cdk-outputs.json');
  // What `cdklocal deploy --outputs-file` writes: the coordinator's outputs, with the API URL in
  // LocalStack's form (its own host name, not one this machine can resolve).
  const coordinatorOutputs = { ...stack.outputs.stacks.DtcCoordinator, ApiUrl: 'https://local12345.execute-api.localhost.localstack.cloud:4566/v1/' };
  await writeFile(outputsFile, JSON.stringify({ DtcData: stack.outputs.stacks.DtcData ?? {}, DtcCoordinator: coordinatorOutputs }));
  h = await startRemoteHarness({ kind: 'localstack', endpoint: edge.url, outputsFile }, { context: { participants: PARTICIPANTS } });
});

afterAll(async () => {
  await h?.stop();
  await edge?.stop();
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('DTC_TARGET=localstack, on a stand-in LocalStack', () => {
  it('commits an order through the signed API, with the demo shop consuming the target queues', async () => {
    expect(h.apiUrl).toBe(`${edge.url}/_aws/execute-api/local12345/v1`);
    const { orderId, body } = orderBody({ items: [{ sku: 'sku-40', quantity: 2 }], account: 'acct-40', amount: 500 });
    const started = await h.request('POST', '/transactions', body);
    expect(started.status).toBe(202);
    const tx = await h.waitForEnd(started.body.txId, 30_000);
    expect(tx.status).toBe('COMMITTED');
    expect((await h.request('GET', `/demo/orders/${orderId}`)).body).toEqual({ orderId, status: 'CONFIRMED' });
    expect((await h.request('GET', '/demo/inventory/sku-40')).body).toMatchObject({ available: 998, held: 0, sold: 2 });
    await h.waitForQuiet();
    // Each participant's request queue and its own reply queue.
    expect(Object.keys(await h.queueDepths()).sort()).toEqual(PARTICIPANTS.flatMap((p) => [`dtc-${p}-replies`, `dtc-${p}-requests`]).sort());
    // Everything went through the one endpoint, as it would to LocalStack.
    for (const kind of ['api', 'dynamodb', 'sqs']) expect(edge.requests.get(kind) ?? 0).toBeGreaterThan(0);
    expect(edge.requests.get('unknown')).toBeUndefined();
  });

  it('aborts an order for more stock than exists, and every service lets go', async () => {
    const { orderId, body } = orderBody({ items: [{ sku: 'sku-41', quantity: 5000 }], account: 'acct-41', amount: 100 });
    const tx = await h.waitForEnd((await h.request('POST', '/transactions', body)).body.txId, 30_000);
    expect(tx.status).toBe('ABORTED');
    await h.waitForQuiet();
    expect(await h.demo.shop.getAccount('acct-41')).toMatchObject({ balance: 100_000, held: 0, charged: 0 });
    const order = await h.demo.shop.getOrder(orderId);
    expect(order === undefined || order.status === 'CANCELLED').toBe(true);
  });

  it('says which members exist on the embedded target only', () => {
    expect(() => h.stack.stepFunctions.onExecutionEnd(() => undefined)).toThrow(/h\.stack\.stepFunctions exists on the embedded target only \(DTC_TARGET=localstack\)/);
    expect(h.stack.outputs.participantQueues.silent).toMatch(/dtc-silent-requests$/);
  });

  it('created the demo tables under a run prefix on the target, and deletes them at stop', async () => {
    const tables = Object.values(h.demo.tables);
    expect(tables.every((t) => /^e2e-[0-9a-f]{8}-/.test(t))).toBe(true);
    const second = await startRemoteHarness(
      { kind: 'localstack', endpoint: edge.url, outputsFile: path.join(dir, 'cdk-outputs.json') },
      { context: { participants: ['inventory'] } },
    );
    const own = Object.values(second.demo.tables);
    await second.stop();
    const listed = async () => (await stack.dynamodb.send(new ListTablesCommand({}))).TableNames ?? [];
    // DeleteTable answers while the table is DELETING (on AWS too): wait for it to be gone.
    await expect.poll(async () => (await listed()).filter((t) => own.includes(t)), { timeout: 15_000, interval: 100 }).toEqual([]);
    expect(await listed()).toEqual(expect.arrayContaining(tables));
  });

  it('refuses a deployment without a participant the tests need, saying how to deploy it', async () => {
    await expect(
      startRemoteHarness({ kind: 'localstack', endpoint: edge.url, outputsFile: path.join(dir, 'cdk-outputs.json') }, { context: { participants: ['inventory', 'ledger'] } }),
    ).rejects.toThrow(/no queue for ledger: deploy with -c participants=inventory,ledger/);
  });
});
