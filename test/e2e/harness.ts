// The end-to-end target: the embedded stack with the demo shop, in memory, on free ports; or,
// with DTC_TARGET=localstack|outputs, a deployment (targets.ts). Not a test file itself.
import { randomUUID } from 'node:crypto';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { TxLog, documentClient } from '../../src/aws/log-store';
import type { TxView } from '../../src/core/transaction';
import { startDemo, type DemoLockOptions, type RunningDemo } from '../../src/local/demo-routes';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../src/local/aws-env';
import { signedHeaders } from '../../src/local/sigv4';
import type { LocalStack } from '../../src/local/stack';
import { startLocalAws } from '../support/aws';
import { startRemoteHarness, targetFromEnv } from './targets';
import { pollUntilEnded, queueDepths, waitForQuietQueues } from './polling';

export interface Harness {
  stack: LocalStack;
  demo: RunningDemo;
  apiUrl: string;
  /** `headers` of the answer are lower-cased. */
  request(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Record<string, string> }>;
  startOrder(spec: OrderSpec, timeouts?: { prepareSeconds?: number; commitSeconds?: number }): Promise<string>;
  waitForEnd(txId: string, timeoutMs?: number): Promise<TxView>;
  /** Wait until every queue of the app is empty (nothing visible, nothing in flight), except `ignore`d ones. */
  waitForQuiet(timeoutMs?: number, ignore?: RegExp): Promise<void>;
  /** Messages (visible + in flight) per queue name. */
  queueDepths(): Promise<Record<string, number>>;
  sendRaw(queueUrl: string, body: unknown): Promise<void>;
  stop(): Promise<void>;
}

export interface OrderSpec {
  orderId?: string;
  items: { sku: string; quantity: number }[];
  account: string;
  amount: number;
  /** Extra participants (e.g. a service that never answers). */
  extra?: { service: string; operation: unknown }[];
}

export function orderBody(spec: OrderSpec, timeouts?: { prepareSeconds?: number; commitSeconds?: number }) {
  const orderId = spec.orderId ?? `o-${randomUUID().slice(0, 8)}`;
  return {
    orderId,
    body: {
      participants: [
        { service: 'inventory', operation: { items: spec.items } },
        { service: 'payment', operation: { account: spec.account, amount: spec.amount } },
        { service: 'shipping', operation: { orderId, address: '1 Main St' } },
        { service: 'order', operation: { orderId, items: spec.items, total: spec.amount } },
        ...(spec.extra ?? []),
      ],
      ...(timeouts ? { timeouts } : {}),
    },
  };
}

export async function startHarness(options: { context?: Record<string, unknown>; locks?: DemoLockOptions } = {}): Promise<Harness> {
  const target = targetFromEnv(process.env);
  if (target.kind !== 'embedded') return startRemoteHarness(target, options);
  const { stack } = await startLocalAws({ app: true, ...(options.context ? { context: options.context } : {}) });
  // The demo's SKU locks only where a test asks for them: orders on a ring of SKUs deadlock
  // (that is the point of test/e2e/deadlock.test.ts), which other tests do not expect.
  const demo = await startDemo(stack, { locks: options.locks ?? false });
  const apiUrl = stack.outputs.apiUrl;
  // One watcher reads every awaited record in batches (consistent BatchGetItem) instead of each
  // waiter polling the API: the whole stack runs in this one process, and hundreds of waiters
  // polling it would slow what they wait for.
  const watcher = endWatcher(documentClient(stack.dynamodb), stack.outputs.txTable);
  const request: Harness['request'] = async (method, path, body, headers = {}) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const plain = { 'content-type': 'application/json', ...headers };
    // With DTC_REQUIRE_AUTH=1 the local gateway checks signatures: sign as a deployed client would.
    const sent = stack.api.auth
      ? await signedHeaders({ method, url: new URL(`${apiUrl}${path}`), headers: plain, ...(payload === undefined ? {} : { body: payload }) }, LOCAL_CREDENTIALS, LOCAL_REGION)
      : plain;
    const res = await fetch(`${apiUrl}${path}`, {
      method,
      headers: sent,
      ...(payload === undefined ? {} : { body: payload }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: Object.fromEntries(res.headers) };
  };
  const depths = () => queueDepths(stack.sqs, stack.outputs.queues);
  return {
    stack,
    demo,
    apiUrl,
    request,
    async startOrder(spec, timeouts) {
      const { body } = orderBody(spec, timeouts);
      const res = await request('POST', '/transactions', body);
      if (res.status !== 202) throw new Error(`POST /transactions answered ${res.status}: ${JSON.stringify(res.body)}`);
      return res.body.txId as string;
    },
    async waitForEnd(txId, timeoutMs = 30_000) {
      const startedAt = Date.now();
      await watcher.ended(txId, timeoutMs);
      return pollUntilEnded(request, txId, timeoutMs, 250, startedAt);
    },
    queueDepths: depths,
    async waitForQuiet(timeoutMs = 15_000, ignore = /silent/) {
      await waitForQuietQueues(depths, timeoutMs, ignore, 100);
    },
    async sendRaw(QueueUrl, body) {
      await stack.sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: JSON.stringify(body) }));
    },
    async stop() {
      watcher.stop();
      await demo.stop();
      await stack.stop();
    },
  };
}

/**
 * Resolves `ended(txId)` once the log record is COMMITTED or ABORTED (or the timeout passes: the
 * caller's poll then reports what it saw). One loop for every waiter: a BatchGetItem of up to 100
 * records every 100 ms while anyone waits (TxLog.getMany).
 */
function endWatcher(doc: DynamoDBDocumentClient, table: string): { ended(txId: string, timeoutMs: number): Promise<void>; stop(): void } {
  const log = new TxLog(doc, table);
  const waiters = new Map<string, (() => void)[]>();
  let running = false;
  let stopped = false;
  const loop = async (): Promise<void> => {
    running = true;
    try {
      while (!stopped && waiters.size > 0) {
        for (const item of await log.getMany([...waiters.keys()])) {
          if (item.status !== 'COMMITTED' && item.status !== 'ABORTED') continue;
          for (const done of waiters.get(item.pk) ?? []) done();
          waiters.delete(item.pk);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    } catch (err) {
      if (!stopped) console.error(`[e2e] end watcher: ${(err as Error).message}`);
    } finally {
      running = false;
      if (!stopped && waiters.size > 0) void loop();
    }
  };
  return {
    ended(txId, timeoutMs) {
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          const rest = (waiters.get(txId) ?? []).filter((d) => d !== done);
          if (rest.length > 0) waiters.set(txId, rest);
          else waiters.delete(txId);
          resolve();
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        waiters.set(txId, [...(waiters.get(txId) ?? []), done]);
        if (!running) void loop();
      });
    },
    stop() {
      stopped = true;
    },
  };
}
