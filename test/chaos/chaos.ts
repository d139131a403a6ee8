// The chaos run: demo orders against the embedded stack in a child process, under injected faults
// (src/local/faults.ts), with the process killed (SIGKILL) and restarted on the same data directory
// at random moments. Afterwards the faults heal, everything must end within a bound, and the
// invariants of DESIGN.md are checked on the tables. Seeded: the seed replays the same orders,
// fault schedule and kill times (the interleaving of real processes still varies).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { createRandom, type Random } from '../../src/core/random';
import type { TxRecord } from '../../src/core/transaction';
import { demoViews, type DemoTotals } from '../../src/demo/shop';
import { documentClient } from '../../src/participant/runner';
import { type FaultInput, PAUSE_REFUSED } from '../../src/local/faults';
import { spawnStack, type StackProcess } from '../../src/local/process';
import { pause } from '../support/fixtures';

export interface ChaosOptions {
  seed: number;
  orders: number;
  /** Kills (SIGKILL + restart on the same data) while orders are running. */
  kills: number;
  /** Orders are sent at a steady pace over this long (ms); the kills fall inside it. */
  durationMs: number;
  faults: Omit<FaultInput, 'seed'>;
  /** After the faults heal, every transaction and participant must settle within this (ms). */
  boundMs: number;
  /** The orders' prepare timeout: a lost PREPARE or VOTE costs this much before the abort. */
  prepareSeconds: number;
  /** The demo services' claim lease (default 30 s): short, so that paused prepare runs get taken over. */
  leaseMs?: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  seed: number;
  orders: number;
  committed: number;
  aborted: number;
  kills: number;
  faults: Record<string, number>;
  faultsTotal: number;
  /** Longest createdAt -> finishedAt of any transaction (downtime included). */
  longestToEndMs: number;
  /** From the faults healing to the last transaction and participant settling. */
  settleAfterHealMs: number;
  /** Accepted orders (202) whose transaction is missing, or never ended: must be empty. */
  lost: string[];
  /** Why transactions aborted, most frequent first. */
  abortReasons: [string, number][];
  /** Per aborted transaction, who had voted (for diagnosis). */
  abortedVotes?: string[];
  violations: string[];
  elapsedMs: number;
}

interface Order {
  orderId: string;
  items: { sku: string; quantity: number }[];
  account: string;
  amount: number;
  txId?: string;
}

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

/** SKUs and accounts the orders use (of the 100 of each seeded): more for a large run, so stock lasts. */
function spreadOf(orders: number): number {
  return orders > 1_000 ? 100 : 20;
}

function makeOrders(rng: Random, count: number, seed: number): Order[] {
  const spread = spreadOf(count);
  return Array.from({ length: count }, (_, i) => {
    const first = rng.int(1, spread);
    const second = rng.chance(0.5) ? rng.int(1, spread) : undefined;
    // One order in ten asks for more stock than exists: it must abort everywhere.
    const tooBig = rng.chance(0.1);
    const items = [{ sku: `sku-${first}`, quantity: tooBig ? 5_000 : rng.int(1, 3) }];
    if (second !== undefined && second !== first) items.push({ sku: `sku-${second}`, quantity: rng.int(1, 3) });
    return { orderId: `chaos-${seed}-${i}`, items, account: `acct-${rng.int(1, spread)}`, amount: rng.int(100, 999) };
  });
}

function orderRequest(o: Order, prepareSeconds: number) {
  return {
    participants: [
      { service: 'inventory', operation: { items: o.items } },
      { service: 'payment', operation: { account: o.account, amount: o.amount } },
      { service: 'shipping', operation: { orderId: o.orderId, address: '1 Chaos Way' } },
      { service: 'order', operation: { orderId: o.orderId, items: o.items, total: o.amount } },
    ],
    timeouts: { prepareSeconds, commitSeconds: 5 },
  };
}


export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const rng = createRandom(options.seed);
  const home = await mkdtemp(path.join(tmpdir(), `dtc-chaos-${options.seed}-`));
  const faultTotals: Record<string, number> = {};
  const addFaults = (p: StackProcess) => {
    for (const [k, v] of Object.entries(p.faultCounts())) faultTotals[k] = (faultTotals[k] ?? 0) + (v ?? 0);
  };
  let lifetime = 0;
  const spawn = async (): Promise<StackProcess> => {
    lifetime++;
    const child = await spawnStack({
      home,
      // A new fault stream per lifetime, still fixed by the seed.
      faults: { ...options.faults, seed: options.seed * 1000 + lifetime },
      context: { logLevel: 'ERROR', sweeperLocalRateSeconds: 2 },
      demo: {
        inquireAfterMs: 3_000,
        visibilityTimeoutSeconds: 5,
        ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
        ...(process.env.DTC_CHAOS_NOLOCKS ? { locks: false as const } : {}),
      },
      onLine: (line) => {
        // Injected faults make plenty of expected errors; show what would need a look.
        // DTC_CHAOS_DEBUG shows every line.
        if (process.env.DTC_CHAOS_DEBUG || /PROTOCOL VIOLATION|^\[local\]|^\[stack process\]/.test(line)) log(`[child ${lifetime}] ${line}`);
      },
    });
    log(`[chaos] stack ${lifetime} ready (pid ${child.ready.pid})`);
    return child;
  };
  let stack = await spawn();
  const client = () => new DynamoDBClient({ endpoint: stack.ready.endpoints.dynamodb, region: 'us-east-1', credentials });
  let dynamodb = client();
  const before = await demoViews(dynamodb).demoTotals();
  const soldBefore = new Map<string, number>();
  for (let i = 1; i <= spreadOf(options.orders); i++) soldBefore.set(`sku-${i}`, (await demoViews(dynamodb).getInventory(`sku-${i}`))!.sold);

  const orders = makeOrders(rng, options.orders, options.seed);
  let down = false;

  // Clients retry every failure with the same Idempotency-Key: a request the crash swallowed
  // returns the same transaction when it is sent again.
  const submit = async (o: Order): Promise<void> => {
    for (let attempt = 0; attempt < 2_000; attempt++) {
      if (!down) {
        try {
          const res = await fetch(`${stack.ready.apiUrl}/transactions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': o.orderId },
            body: JSON.stringify(orderRequest(o, options.prepareSeconds)),
            signal: AbortSignal.timeout(10_000),
          });
          const body = (await res.json().catch(() => ({}))) as { txId?: string };
          if (res.status === 202 && body.txId) {
            o.txId = body.txId;
            return;
          }
          if (res.status >= 400 && res.status < 500) throw new Error(`order ${o.orderId}: ${res.status} ${JSON.stringify(body)}`);
        } catch (err) {
          if ((err as Error).message.startsWith(`order ${o.orderId}`)) throw err;
        }
      }
      await pause(200 + rng.int(0, 200));
    }
    throw new Error(`order ${o.orderId} was never accepted`);
  };

  // Orders arrive at a steady pace over `durationMs`; the kills fall at random moments inside it.
  const t0 = Date.now();
  const submitting = Promise.all(
    orders.map(async (o, i) => {
      await pause((i * options.durationMs) / orders.length + rng.int(0, 100));
      await submit(o);
    }),
  );
  const killAt = Array.from({ length: options.kills }, () => rng.int(Math.floor(options.durationMs * 0.1), Math.floor(options.durationMs * 0.9))).sort((a, b) => a - b);
  for (const at of killAt) {
    await pause(Math.max(0, t0 + at - Date.now()));
    down = true;
    addFaults(stack);
    log(`[chaos] kill -9 stack ${lifetime} (pid ${stack.ready.pid}) at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await stack.kill();
    dynamodb.destroy();
    stack = await spawn();
    dynamodb = client();
    down = false;
  }
  await submitting;

  // The faults heal; from here everything must settle within the bound.
  stack.heal();
  const healedAt = Date.now();
  const txIds = orders.map((o) => o.txId!);
  let settled = false;
  let records = new Map<string, TxRecord>();
  while (Date.now() - healedAt < options.boundMs) {
    records = await readLog(dynamodb, stack.ready.txTable);
    if (txIds.every((id) => isFinal(records.get(id))) && (await participantsSettled(dynamodb, stack.ready.demoTables, new Set(txIds)))) {
      settled = true;
      break;
    }
    // Each check scans the log and the four tables: less often for a large run.
    await pause(options.orders > 1_000 ? 5_000 : 1_000);
  }
  const settleAfterHealMs = Date.now() - healedAt;
  addFaults(stack);

  const violations: string[] = [];
  const lost = orders.filter((o) => !o.txId || !records.has(o.txId)).map((o) => o.orderId);
  if (!settled) {
    const open = txIds.filter((id) => !isFinal(records.get(id))).map((id) => `${id}(${records.get(id)?.status ?? 'missing'})`);
    violations.push(`not settled ${options.boundMs} ms after the faults healed; open: ${open.join(', ') || 'participants only'}`);
  }
  violations.push(...(await checkInvariants(dynamodb, stack.ready.demoTables, orders, records, before, soldBefore)));

  const finished = orders.map((o) => records.get(o.txId!)).filter((r): r is TxRecord => r !== undefined && r.finishedAt !== undefined);
  const longestToEndMs = Math.max(0, ...finished.map((r) => Date.parse(r.finishedAt!) - Date.parse(r.createdAt)));
  const report: ChaosReport = {
    seed: options.seed,
    orders: orders.length,
    committed: finished.filter((r) => r.status === 'COMMITTED').length,
    aborted: finished.filter((r) => r.status === 'ABORTED').length,
    kills: options.kills,
    faults: faultTotals,
    // Paused runs refused on resuming are an outcome of the pause fault, not a fault of their own.
    faultsTotal: Object.entries(faultTotals).reduce((a, [k, n]) => a + (k === PAUSE_REFUSED ? 0 : n), 0),
    longestToEndMs,
    settleAfterHealMs,
    lost,
    abortReasons: countReasons(finished.filter((r) => r.status === 'ABORTED').map((r) => r.decisionReason ?? '')),
    ...(process.env.DTC_CHAOS_DEBUG
      ? { abortedVotes: finished.filter((r) => r.status === 'ABORTED').map((r) => `${r.txId} ${r.createdAt} ${r.decidedAt} ${JSON.stringify(r.votes)}`) }
      : {}),
    violations,
    elapsedMs: Date.now() - started,
  };
  await stack.stop();
  dynamodb.destroy();
  if (violations.length === 0) await rm(home, { recursive: true, force: true });
  else log(`[chaos] data kept in ${home}`);
  return report;
}

function countReasons(reasons: string[]): [string, number][] {
  const counts = new Map<string, number>();
  // Reasons name accounts, SKUs and amounts: keep their shape only.
  for (const r of reasons) {
    const shape = r.replace(/\b(sku|acct|tx|chaos)-[\w-]+/g, '$1-*').replace(/\d+/g, 'N');
    counts.set(shape, (counts.get(shape) ?? 0) + 1);
  }
  return [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8);
}

function isFinal(r: TxRecord | undefined): boolean {
  return r?.status === 'COMMITTED' || r?.status === 'ABORTED';
}

async function scanAll(dynamodb: DynamoDBClient, table: string): Promise<Record<string, unknown>[]> {
  const doc = documentClient(dynamodb);
  const items: Record<string, unknown>[] = [];
  let ExclusiveStartKey: Record<string, unknown> | undefined;
  for (let page = 0; page < 1_000; page++) {
    const out = await doc.send(new ScanCommand({ TableName: table, ConsistentRead: true, ...(ExclusiveStartKey ? { ExclusiveStartKey } : {}) }));
    items.push(...(out.Items ?? []));
    ExclusiveStartKey = out.LastEvaluatedKey;
    if (!ExclusiveStartKey) return items;
  }
  throw new Error(`scan of ${table} did not end`);
}

async function readLog(dynamodb: DynamoDBClient, table: string): Promise<Map<string, TxRecord>> {
  const items = await scanAll(dynamodb, table);
  return new Map(items.filter((i) => typeof i.txId === 'string' && typeof i.status === 'string').map((i) => [i.txId as string, i as unknown as TxRecord]));
}

/** No barrier record of these transactions is undecided, and no hold is left on any item. */
async function participantsSettled(dynamodb: DynamoDBClient, tables: Record<string, string>, txIds: Set<string>): Promise<boolean> {
  for (const table of Object.values(tables)) {
    for (const item of await scanAll(dynamodb, table)) {
      if (typeof item.pk === 'string' && item.pk.startsWith('barrier#') && txIds.has(item.txId as string)) {
        if (item.state === 'PREPARING' || (item.state === 'PREPARED' && item.vote === 'YES')) return false;
      }
      if (item.holds && typeof item.holds === 'object' && Object.keys(item.holds).length > 0) return false;
    }
  }
  return true;
}

async function checkInvariants(
  dynamodb: DynamoDBClient,
  tables: Record<string, string>,
  orders: Order[],
  records: Map<string, TxRecord>,
  before: DemoTotals,
  soldBefore: Map<string, number>,
): Promise<string[]> {
  const v: string[] = [];
  const views = demoViews(dynamodb);
  const barriers = new Map<string, Map<string, string>>(); // txId -> service -> state
  for (const [service, table] of Object.entries(tables)) {
    for (const item of await scanAll(dynamodb, table)) {
      if (typeof item.pk !== 'string' || !item.pk.startsWith('barrier#')) continue;
      const per = barriers.get(item.txId as string) ?? new Map<string, string>();
      per.set(service, item.state === 'PREPARED' ? `PREPARED(${String(item.vote)})` : String(item.state));
      barriers.set(item.txId as string, per);
    }
  }
  const sold = new Map<string, number>();
  for (const o of orders) {
    const r = o.txId ? records.get(o.txId) : undefined;
    if (!r) continue;
    const order = await views.getOrder(o.orderId);
    const shipment = await views.getShipment(o.orderId);
    const states = barriers.get(r.txId) ?? new Map<string, string>();
    if (r.status === 'COMMITTED') {
      // Atomicity: committed at all four services.
      for (const service of ['inventory', 'payment', 'shipping', 'order']) {
        if (states.get(service) !== 'COMMITTED') v.push(`${r.txId} committed, but ${service}'s barrier is ${states.get(service) ?? 'absent'}`);
      }
      if (order?.status !== 'CONFIRMED') v.push(`${r.txId} committed, order ${o.orderId} is ${order?.status ?? 'absent'}`);
      if (shipment?.status !== 'SCHEDULED') v.push(`${r.txId} committed, shipment ${o.orderId} is ${shipment?.status ?? 'absent'}`);
      if (Object.values(r.votes).some((x) => x.vote === 'NO')) v.push(`${r.txId} committed with a NO vote`);
      for (const it of o.items) sold.set(it.sku, (sold.get(it.sku) ?? 0) + it.quantity);
    } else if (r.status === 'ABORTED') {
      for (const [service, state] of states) if (state === 'COMMITTED') v.push(`${r.txId} aborted, but ${service} committed`);
      if (order !== undefined && order.status !== 'CANCELLED') v.push(`${r.txId} aborted, order ${o.orderId} is ${order.status}`);
      if (shipment !== undefined) v.push(`${r.txId} aborted, shipment ${o.orderId} exists (${shipment.status})`);
    }
  }
  // Money and stock conserved, nothing held, no stock below zero, and exactly the committed sold.
  const after = await views.demoTotals();
  if (after.stock !== before.stock) v.push(`stock not conserved: ${before.stock} -> ${after.stock}`);
  if (after.money !== before.money) v.push(`money not conserved: ${before.money} -> ${after.money}`);
  if (after.openHolds !== 0) v.push(`${after.openHolds} items still hold something`);
  for (let i = 1; i <= soldBefore.size; i++) {
    const sku = `sku-${i}`;
    const inv = (await views.getInventory(sku))!;
    if (inv.available < 0) v.push(`${sku} has negative stock ${inv.available}`);
    const delta = inv.sold - soldBefore.get(sku)!;
    if (delta !== (sold.get(sku) ?? 0)) v.push(`${sku}: sold ${delta}, committed orders add up to ${sold.get(sku) ?? 0}`);
  }
  return v;
}
