// The demo shop: four participant services on the SDK, each with its own table that holds both its
// data and its barrier records. Tables, seed data, consumers and read-only views for tests and demos.
import { CreateTableCommand, type CreateTableCommandInput, DynamoDBClient, ResourceInUseException } from '@aws-sdk/client-dynamodb';
import { waitForTable } from '../aws/tables';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { type DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import type { LockService } from '../locks/service';
import { type Consumer, startConsumer } from '../participant/consumer';
import type { DecisionSource } from '../participant/decisions';
import type { Participant } from '../participant/define';
import { type ParticipantLogger, documentClient } from '../participant/runner';
import { BarrierStore, type TransactWrite } from '../participant/barrier-store';
import type { BarrierStorePort } from '../core/ports';
import { INVENTORY_FIELDS, type InventoryOptions, inventoryParticipant, skuKey } from './inventory';
import { orderKey, orderParticipant } from './order';
import { PAYMENT_FIELDS, accountKey, paymentParticipant } from './payment';
import { DemoTable } from './records';
import { shipmentKey, shippingParticipant } from './shipping';

export const DEMO_SERVICES = ['inventory', 'payment', 'shipping', 'order'] as const;
export type DemoService = (typeof DEMO_SERVICES)[number];

export const DEMO_TABLES: Readonly<Record<DemoService, string>> = {
  inventory: 'demo-inventory',
  payment: 'demo-payment',
  shipping: 'demo-shipping',
  order: 'demo-order',
};

export const DEMO_SEED = { skus: 100, stock: 1000, accounts: 100, balance: 100_000 } as const;

/** The services that call lock() in prepare; only they are given the lock service (see startDemoShop). */
export const LOCKING_SERVICES: readonly DemoService[] = ['inventory'];

export interface DemoTableOptions {
  /** Prepended to every table name, so that tests and runs can share one DynamoDB. */
  prefix?: string;
}

export function demoTableNames(prefix = ''): Record<DemoService, string> {
  return {
    inventory: `${prefix}${DEMO_TABLES.inventory}`,
    payment: `${prefix}${DEMO_TABLES.payment}`,
    shipping: `${prefix}${DEMO_TABLES.shipping}`,
    order: `${prefix}${DEMO_TABLES.order}`,
  };
}

export function demoParticipants(doc: DynamoDBDocumentClient, prefix = '', inventory: InventoryOptions = {}): Record<DemoService, Participant> {
  const names = demoTableNames(prefix);
  return {
    inventory: inventoryParticipant(new DemoTable(doc, names.inventory), inventory),
    payment: paymentParticipant(new DemoTable(doc, names.payment)),
    shipping: shippingParticipant(new DemoTable(doc, names.shipping)),
    order: orderParticipant(new DemoTable(doc, names.order)),
  };
}

/**
 * A participant's own table, which holds its data and its barrier records (see runner.ts): key `pk`
 * (S), on-demand. The one definition the demo creates and the tests' participant tables use.
 */
export function participantTableInput(TableName: string): CreateTableCommandInput & { TableName: string } {
  return {
    TableName,
    AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    BillingMode: 'PAY_PER_REQUEST',
  };
}

/** Creates the four tables if missing (participantTableInput); safe to call again. */
export async function createDemoTables(dynamodb: DynamoDBClient, options: DemoTableOptions = {}): Promise<Record<DemoService, string>> {
  const names = demoTableNames(options.prefix);
  for (const TableName of Object.values(names)) {
    try {
      await dynamodb.send(new CreateTableCommand(participantTableInput(TableName)));
    } catch (err) {
      if (!(err instanceof ResourceInUseException)) throw err;
    }
    await waitForTable(dynamodb, TableName);
  }
  return names;
}

export interface SeedOptions extends DemoTableOptions {
  skus?: number;
  stock?: number;
  accounts?: number;
  balance?: number;
}

/** SKUs sku-1..sku-N and accounts acct-1..acct-M; an item that exists is never overwritten. */
export async function seedDemo(dynamodb: DynamoDBClient, options: SeedOptions = {}): Promise<void> {
  const { skus = DEMO_SEED.skus, stock = DEMO_SEED.stock, accounts = DEMO_SEED.accounts, balance = DEMO_SEED.balance } = options;
  const names = demoTableNames(options.prefix);
  const doc = documentClient(dynamodb);
  const inventory = new DemoTable(doc, names.inventory);
  const payment = new DemoTable(doc, names.payment);
  const jobs: (() => Promise<unknown>)[] = [];
  for (let i = 1; i <= skus; i++) {
    const sku = `sku-${i}`;
    jobs.push(() => inventory.putIfAbsent({ pk: skuKey(sku), sku, available: stock, held: 0, sold: 0, holds: {} }));
  }
  for (let i = 1; i <= accounts; i++) {
    const account = `acct-${i}`;
    jobs.push(() => payment.putIfAbsent({ pk: accountKey(account), account, balance, held: 0, charged: 0, holds: {} }));
  }
  await runBounded(jobs, 16);
}

export interface InventoryView {
  sku: string;
  available: number;
  held: number;
  sold: number;
}
export interface AccountView {
  account: string;
  balance: number;
  held: number;
  charged: number;
}
export interface StatusView {
  orderId: string;
  status: string;
}
export interface DemoTotals {
  /** Sum over all SKUs of available + held + sold: constant unless stock is added. */
  stock: number;
  /** Sum over all accounts of balance + held + charged: constant unless money is added. */
  money: number;
  /** SKUs and accounts whose holds map is not empty: 0 once every transaction has finished. */
  openHolds: number;
  skus: number;
  accounts: number;
}

export interface DemoViews {
  getInventory(sku: string): Promise<InventoryView | undefined>;
  getAccount(account: string): Promise<AccountView | undefined>;
  getOrder(orderId: string): Promise<StatusView | undefined>;
  getShipment(orderId: string): Promise<StatusView | undefined>;
  demoTotals(): Promise<DemoTotals>;
}

/** Consistent reads of the shop's state, for tests, the local API and conservation checks. */
export function demoViews(dynamodb: DynamoDBClient = new DynamoDBClient({}), options: DemoTableOptions = {}): DemoViews {
  const doc = documentClient(dynamodb);
  const names = demoTableNames(options.prefix);
  const tables = {
    inventory: new DemoTable(doc, names.inventory),
    payment: new DemoTable(doc, names.payment),
    shipping: new DemoTable(doc, names.shipping),
    order: new DemoTable(doc, names.order),
  };
  const status = async (table: DemoTable, pk: string, orderId: string): Promise<StatusView | undefined> => {
    const item = await table.get(pk);
    return item ? { orderId, status: String(item.status) } : undefined;
  };
  return {
    async getInventory(sku) {
      const item = await tables.inventory.get(skuKey(sku));
      return item ? { sku, available: num(item.available), held: num(item.held), sold: num(item.sold) } : undefined;
    },
    async getAccount(account) {
      const item = await tables.payment.get(accountKey(account));
      return item ? { account, balance: num(item.balance), held: num(item.held), charged: num(item.charged) } : undefined;
    },
    getOrder: (orderId) => status(tables.order, orderKey(orderId), orderId),
    getShipment: (orderId) => status(tables.shipping, shipmentKey(orderId), orderId),
    async demoTotals() {
      const totals: DemoTotals = { stock: 0, money: 0, openHolds: 0, skus: 0, accounts: 0 };
      for (const item of await scanPrefix(doc, names.inventory, 'sku#')) {
        totals.skus++;
        totals.stock += num(item[INVENTORY_FIELDS.free]) + num(item[INVENTORY_FIELDS.held]) + num(item[INVENTORY_FIELDS.done]);
        if (hasHolds(item)) totals.openHolds++;
      }
      for (const item of await scanPrefix(doc, names.payment, 'acct#')) {
        totals.accounts++;
        totals.money += num(item[PAYMENT_FIELDS.free]) + num(item[PAYMENT_FIELDS.held]) + num(item[PAYMENT_FIELDS.done]);
        if (hasHolds(item)) totals.openHolds++;
      }
      return totals;
    },
  };
}

export interface DemoShopOptions extends DemoTableOptions {
  /** Request queue per service; a service without a queue is not started. */
  queueUrls: Partial<Record<string, string>>;
  /** Reply queue per service: each service speaks only on its own. */
  replyQueueUrls: Partial<Record<string, string>>;
  /** Start only these services (default: every demo service that has a queue). */
  services?: string[];
  sqs?: SQSClient;
  dynamodb?: DynamoDBClient;
  logger?: ParticipantLogger;
  concurrency?: number;
  waitTimeSeconds?: number;
  visibilityTimeoutSeconds?: number;
  leaseMs?: number;
  busyWaitMs?: number;
  /** The lock service for the services that lock (inventory locks each SKU exclusively). */
  locks?: LockService;
  lockLeaseMs?: number;
  /** See InventoryOptions.pauseBetweenLocksMs (a demo knob for the deadlock demo). */
  inventoryPauseBetweenLocksMs?: number;
  /** In-doubt inquiry: where a service that voted YES and heard nothing reads the decision. */
  decisions?: DecisionSource;
  inquireAfterMs?: number;
  /** Wraps each service's handlers (fault injection: src/local/faults.ts). */
  wrapParticipant?: (participant: Participant) => Participant;
  /** Wraps each service's barrier store, which writes its effects (fault injection: src/local/faults.ts). */
  wrapBarrierStore?: (store: BarrierStorePort<TransactWrite>) => BarrierStorePort<TransactWrite>;
}

export interface DemoShop extends DemoViews {
  readonly services: DemoService[];
  readonly tables: Record<DemoService, string>;
  stop(): Promise<void>;
}

/** One consumer per demo service that has its queues; the tables must exist (createDemoTables). */
export function startDemoShop(options: DemoShopOptions): DemoShop {
  const wanted = options.services ?? [...DEMO_SERVICES];
  const unknown = wanted.filter((s) => !(DEMO_SERVICES as readonly string[]).includes(s));
  if (unknown.length > 0) throw new Error(`unknown demo services: ${unknown.join(', ')} (known: ${DEMO_SERVICES.join(', ')})`);
  const dynamodb = options.dynamodb ?? new DynamoDBClient({});
  const doc = documentClient(dynamodb);
  const participants = demoParticipants(
    doc,
    options.prefix,
    options.inventoryPauseBetweenLocksMs === undefined ? {} : { pauseBetweenLocksMs: options.inventoryPauseBetweenLocksMs },
  );
  const tables = demoTableNames(options.prefix);
  const services = DEMO_SERVICES.filter((s) => wanted.includes(s) && options.queueUrls[s] !== undefined && options.replyQueueUrls[s] !== undefined);
  const consumers: Consumer[] = services.map((service) =>
    startConsumer({
      participant: options.wrapParticipant ? options.wrapParticipant(participants[service]) : participants[service],
      ...(options.wrapBarrierStore ? { barrierStore: options.wrapBarrierStore(new BarrierStore(doc, tables[service], service)) } : {}),
      queueUrl: options.queueUrls[service]!,
      replyQueueUrl: options.replyQueueUrls[service]!,
      table: tables[service],
      dynamodb,
      ...(options.sqs ? { sqs: options.sqs } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
      ...(options.waitTimeSeconds === undefined ? {} : { waitTimeSeconds: options.waitTimeSeconds }),
      ...(options.visibilityTimeoutSeconds === undefined ? {} : { visibilityTimeoutSeconds: options.visibilityTimeoutSeconds }),
      ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
      ...(options.busyWaitMs === undefined ? {} : { busyWaitMs: options.busyWaitMs }),
      // Only services that lock get the service: releasing after commit/abort reads the release index.
      ...(options.locks && LOCKING_SERVICES.includes(service) ? { locks: options.locks } : {}),
      ...(options.lockLeaseMs === undefined ? {} : { lockLeaseMs: options.lockLeaseMs }),
      ...(options.decisions ? { decisions: options.decisions } : {}),
      ...(options.inquireAfterMs === undefined ? {} : { inquireAfterMs: options.inquireAfterMs }),
    }),
  );
  return {
    ...demoViews(dynamodb, options),
    services,
    tables,
    async stop() {
      await Promise.all(consumers.map((c) => c.stop()));
    },
  };
}

async function scanPrefix(doc: DynamoDBDocumentClient, table: string, prefix: string): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  let ExclusiveStartKey: Record<string, unknown> | undefined;
  // Bounded: 10,000 pages of up to 1 MB is far beyond any demo table.
  for (let page = 0; page < 10_000; page++) {
    const out = await doc.send(
      new ScanCommand({
        TableName: table,
        ConsistentRead: true,
        FilterExpression: 'begins_with(pk, :prefix)',
        ExpressionAttributeValues: { ':prefix': prefix },
        ...(ExclusiveStartKey ? { ExclusiveStartKey } : {}),
      }),
    );
    items.push(...(out.Items ?? []));
    ExclusiveStartKey = out.LastEvaluatedKey;
    if (!ExclusiveStartKey) return items;
  }
  throw new Error(`scan of ${table} did not finish within 10,000 pages`);
}

async function runBounded(jobs: (() => Promise<unknown>)[], concurrency: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) await jobs[next++]!();
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, jobs.length) }, worker));
}

function num(value: unknown): number {
  return typeof value === 'number' ? value : 0;
}

function hasHolds(item: Record<string, unknown>): boolean {
  const holds = item.holds;
  return typeof holds === 'object' && holds !== null && Object.keys(holds).length > 0;
}
