// The demo shop on the embedded stack: its tables, seed data, one consumer per service, and
// read-only views on the local API (`/demo/...`). Not part of the coordinator's CDK app: the shop
// stands for the users' own services, which live outside it.
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { createDemoTables, seedDemo, startDemoShop, type DemoShop, type DemoShopOptions } from '../demo';
import { type LockSetup, type TransactionPort, apiTransactions, createLocks } from '../locks';
import type { Participant } from '../participant/define';
import { apiDecisions } from '../participant/decisions';
import type { LocalStack } from './stack';

export interface DemoLockOptions {
  /** Lease of a SKU lock while inventory's prepare runs (default: the SDK's). */
  lockLeaseMs?: number;
  /** A lock wait longer than this runs deadlock detection in process (default: the service's). */
  detectAfterMs?: number;
  /** InventoryOptions.pauseBetweenLocksMs: makes the opposite-order deadlock demo deterministic. */
  pauseBetweenLocksMs?: number;
}

export interface RunningDemo {
  shop: DemoShop;
  tables: Record<string, string>;
  /** The lock service the shop's inventory locks SKUs with (on the stack's lock table). */
  locks?: LockSetup;
  stop(): Promise<void>;
}

export async function startDemo(
  stack: LocalStack,
  options: {
    prefix?: string;
    services?: string[];
    locks?: DemoLockOptions | false;
    /** A service that voted YES and heard nothing asks for the decision this long after the prepare deadline. */
    inquireAfterMs?: number;
    /** Wraps each service's handlers (fault injection: src/local/faults.ts). */
    wrapParticipant?: (participant: Participant) => Participant;
    /** Wraps each service's barrier store (fault injection: src/local/faults.ts). */
    wrapBarrierStore?: DemoShopOptions['wrapBarrierStore'];
    /** A prepare run's claim lease (default 30 s; chaos runs shorten it so that paused runs are taken over). */
    leaseMs?: number;
    /** How long a received message stays invisible before SQS redelivers it (default: the SDK's 60 s). */
    visibilityTimeoutSeconds?: number;
  } = {},
): Promise<RunningDemo> {
  const tableOptions = options.prefix === undefined ? {} : { prefix: options.prefix };
  await createDemoTables(stack.dynamodb, tableOptions);
  await seedDemo(stack.dynamodb, tableOptions);
  const lockOptions = options.locks === false || !stack.outputs.lockTable ? undefined : (options.locks ?? {});
  const locks = lockOptions
    ? createLocks({
        lockTable: stack.outputs.lockTable,
        // The shop's services are participants: they learn and abort transactions through the API only.
        // Every waiting prepare checks its own transaction, and each detection run every member of the
        // wait-for graph: shared answers keep a burst of waiters (after a restart, say) from
        // flooding the API, which runs in this same process, until its answers time out.
        transactions: sharedAnswers(apiTransactions({ baseUrl: stack.outputs.apiUrl, timeoutMs: 30_000 }), 250),
        dynamodb: stack.dynamodb,
        ...(lockOptions.detectAfterMs === undefined ? {} : { detectAfterMs: lockOptions.detectAfterMs }),
      })
    : undefined;
  const shop = startDemoShop({
    ...(locks ? { locks: locks.locks } : {}),
    ...(lockOptions?.lockLeaseMs === undefined ? {} : { lockLeaseMs: lockOptions.lockLeaseMs }),
    ...(lockOptions?.pauseBetweenLocksMs === undefined ? {} : { inventoryPauseBetweenLocksMs: lockOptions.pauseBetweenLocksMs }),
    ...tableOptions,
    queueUrls: stack.outputs.participantQueues,
    replyQueueUrls: stack.outputs.replyQueueUrls,
    dynamodb: stack.dynamodb,
    sqs: stack.sqs,
    ...(options.services ? { services: options.services } : {}),
    // In doubt, the shop's services ask the API for the outcome (GET /transactions/{id}/decision).
    decisions: apiDecisions({ baseUrl: stack.outputs.apiUrl }),
    ...(options.inquireAfterMs === undefined ? {} : { inquireAfterMs: options.inquireAfterMs }),
    ...(options.wrapParticipant ? { wrapParticipant: options.wrapParticipant } : {}),
    ...(options.wrapBarrierStore ? { wrapBarrierStore: options.wrapBarrierStore } : {}),
    ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
    ...(options.visibilityTimeoutSeconds === undefined ? {} : { visibilityTimeoutSeconds: options.visibilityTimeoutSeconds }),
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
  return { shop, tables: shop.tables, ...(locks ? { locks } : {}), stop: () => shop.stop() };
}

/**
 * A transaction port whose `get` answers are shared: concurrent asks for one transaction make one
 * request, and an answer serves for `ttlMs` (a status at most that old; every decision is re-checked
 * by the conditional writes behind `abort`, which always goes through and forgets the answer).
 */
export function sharedAnswers(inner: TransactionPort, ttlMs: number, now: () => number = Date.now): TransactionPort {
  const answers = new Map<string, { at: number; answer: ReturnType<TransactionPort['get']> }>();
  return {
    get(txId) {
      const known = answers.get(txId);
      if (known && now() - known.at < ttlMs) return known.answer;
      const answer = inner.get(txId);
      answers.set(txId, { at: now(), answer });
      // A failed ask is not kept; old answers are dropped as they expire.
      answer.catch(() => answers.delete(txId));
      if (answers.size > 10_000) for (const [id, a] of answers) if (now() - a.at >= ttlMs) answers.delete(id);
      return answer;
    },
    async abort(txId, reason) {
      answers.delete(txId);
      return inner.abort(txId, reason);
    },
  };
}
