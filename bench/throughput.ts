// Throughput, latency and billable use of 4-participant demo orders on the embedded stack.
// Usage: npm run bench -- [--clients 16] [--seconds 20] [--warmup 3] [--json FILE]
//
// Each client starts an order through the API and waits for its end, which the bench learns from
// inside the embedded DynamoDB (a watch on the log record's `status` becoming COMMITTED or ABORTED),
// so observing costs no request. Decision and end latency come from the record's own createdAt,
// decidedAt and finishedAt. Billable use is what the emulators counted during the measured window
// (src/local/meter.ts), divided by the transactions that ended in it; bench/model.ts prices it at
// list prices and divides each default quota by it. `--json FILE` writes the result as JSON.
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { readConfig } from '../src/aws/config';
import { percentile } from '../src/console/series';
import { DEFAULT_SUPERVISION } from '../src/core/transaction';
import { startDemo } from '../src/local/demo-routes';
import type { MeterReading } from '../src/local/meter';
import { startLocalStack, synthesize } from '../src/local/stack';
import type { LocalStepFunctionsStats } from '../src/local/stepfunctions';
import {
  apiKind as readApiKind,
  capacity,
  capacityRows,
  atRate,
  costLines,
  costPerMillionUsd,
  functionConfigs,
  groupClaimsPerTransaction,
  groupsPerSecond,
  raisedQuotas,
  sqsSide,
  type FunctionUse,
  type ModelInput,
  type PerTransaction,
  type Templates,
} from './model';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    json: { type: 'string' },
  },
});
const clients = Number(values.clients);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
if (![clients, seconds, warmup].every((v) => Number.isFinite(v) && v >= 0) || clients < 1) {
  throw new Error(`--clients must be >= 1 and --seconds, --warmup >= 0; got ${values.clients}, ${values.seconds}, ${values.warmup}`);
}
const PROGRESS_EVERY_MS = 5_000;
/** A transaction that has not ended after this long means a broken stack: fail instead of hanging. */
const END_TIMEOUT_MS = 120_000;
/**
 * After the window, how long the bench waits for the supervisors of the window's groups to end, so
 * their state transitions are counted over their whole life (a group's supervisor ends about
 * `supervisionBucketSeconds` + 30 s after its bucket opened on the happy path).
 */
const SUPERVISORS_TIMEOUT_MS = 180_000;
/** The log record's attribute and final values the bench watches (src/core/transaction.ts). */
const STATUS_ATTRIBUTE = 'status';
const FINAL_STATUSES = ['COMMITTED', 'ABORTED'];

// The coordinator's functions emit embedded-metric-format lines on AWS, which CloudWatch Logs
// ingests and bills: emit them here too (counted, not printed; see meterLogs below).
process.env.POWERTOOLS_METRICS_DISABLED ??= 'false';

// Schedules (the recovery sweeper, the deadlock detector) run at their deployed rate, not the faster
// local one (`dtc:localRateSeconds`): their cost is per minute, not per transaction, and at the local
// rate it would land in the per-transaction figures of a short run.
const templates = synthesize().map(deployedSchedules);
const stack = await startLocalStack({ port: 0, templates });
stack.lambda.meterLogs({ echo: false });
stack.meter.countKeys = true;
const demo = await startDemo(stack);
const api = stack.outputs.apiUrl;

interface Sample {
  txId: string;
  createdMs: number;
  decisionMs: number;
  endMs: number;
  status: string;
}

// Ends seen by the watch, matched to the client waiting for that transaction.
const ended = new Map<string, Sample>();
const waiting = new Map<string, (s: Sample) => void>();
stack.watchItems(stack.outputs.txTable, STATUS_ATTRIBUTE, FINAL_STATUSES, (item) => {
  const txId = String(item.txId ?? item.pk);
  const created = Date.parse(String(item.createdAt));
  const sample = { txId, createdMs: created, decisionMs: Date.parse(String(item.decidedAt)) - created, endMs: Date.parse(String(item.finishedAt)) - created, status: String(item.status) };
  const resolve = waiting.get(txId);
  if (resolve) {
    waiting.delete(txId);
    resolve(sample);
  } else ended.set(txId, sample);
});

// Each transaction's supervision group, as its record was created with it (`og`: the finished
// record no longer has it). The coordinator deals it, so it is read, not computed from the id.
const groupOfTx = new Map<string, string>();
stack.watchItems(stack.outputs.txTable, STATUS_ATTRIBUTE, ['PREPARING'], (item) => {
  if (typeof item.og === 'string') groupOfTx.set(String(item.txId ?? item.pk), item.og);
});

function deployedSchedules(stack: Templates): Templates {
  const resources = Object.fromEntries(
    Object.entries(stack.template.Resources ?? {}).map(([id, r]) => {
      if (r.Type !== 'AWS::Events::Rule' || !r.Metadata?.['dtc:localRateSeconds']) return [id, r];
      const { 'dtc:localRateSeconds': _local, ...metadata } = r.Metadata;
      return [id, { ...r, Metadata: metadata }];
    }),
  );
  return { ...stack, template: { ...stack.template, Resources: resources } };
}

// How the coordinator groups transactions for supervision: its own configuration (as
// src/coordinator.ts reads it), from the functions' environment the provisioner applied to this process.
const supervision = readConfig().supervision ?? DEFAULT_SUPERVISION;

async function waitForEnd(txId: string): Promise<Sample> {
  const early = ended.get(txId);
  if (early) {
    ended.delete(txId);
    return early;
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<Sample>((resolve, reject) => {
      waiting.set(txId, resolve);
      timer = setTimeout(() => reject(new Error(`transaction ${txId} did not end within ${END_TIMEOUT_MS} ms`)), END_TIMEOUT_MS);
    });
  } finally {
    clearTimeout(timer);
    waiting.delete(txId);
  }
}

async function order(i: number): Promise<string> {
  const sku = `sku-${1 + (i % 100)}`;
  const orderId = `bench-${i}`;
  const res = await fetch(`${api}/transactions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      participants: [
        { service: 'inventory', operation: { items: [{ sku, quantity: 1 }] } },
        { service: 'payment', operation: { account: `acct-${1 + (i % 100)}`, amount: 1 } },
        { service: 'shipping', operation: { orderId, address: '1 Main St' } },
        { service: 'order', operation: { orderId, items: [{ sku, quantity: 1 }], total: 1 } },
      ],
    }),
  });
  if (res.status !== 202) throw new Error(`POST answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { txId: string }).txId;
}

let next = 0;
/** Every transaction the bench started: keys that name one carry that transaction's writes alone. */
const started = new Set<string>();
let samples: Sample[] = [];
/** Every transaction that ended, warm-up included: the groups' sizes (a group's transitions are shared by all its members). */
const allSamples: Sample[] = [];
let stopAt = 0;
async function client(): Promise<void> {
  while (Date.now() < stopAt) {
    const txId = await order(next++);
    started.add(txId);
    const sample = await waitForEnd(txId);
    samples.push(sample);
    allSamples.push(sample);
  }
}

/** The console's nearest-rank percentile, of unsorted values; NaN for none. */
const pct = (xs: number[], p: number) => percentile([...xs].sort((x, y) => x - y), p) ?? NaN;

/** Run the clients until `durationS` has passed, printing progress every few seconds. */
async function phase(name: string, durationS: number): Promise<{ samples: Sample[]; elapsedS: number }> {
  samples = [];
  const t0 = Date.now();
  stopAt = t0 + durationS * 1000;
  const progress = setInterval(() => {
    const s = (Date.now() - t0) / 1000;
    console.log(
      `[bench] ${name} ${s.toFixed(0)} s: ${samples.length} transactions ended, ${(samples.length / s).toFixed(1)} tx/s, p50 decision ${pct(samples.map((x) => x.decisionMs), 50)} ms`,
    );
  }, PROGRESS_EVERY_MS);
  try {
    await Promise.all(Array.from({ length: clients }, client));
  } finally {
    clearInterval(progress);
  }
  return { samples, elapsedS: (Date.now() - t0) / 1000 };
}

const schedules = templates.flatMap((t) =>
  Object.entries(t.template.Resources ?? {}).flatMap(([id, r]) => (r.Type === 'AWS::Events::Rule' ? [`${id} ${String(r.Properties?.ScheduleExpression)}`] : [])),
);
console.log(`schedules at their deployed rates (a cost per minute, not per transaction; a short run sees few or none): ${schedules.join(', ') || 'none'}`);
console.log(`warming up ${warmup} s with ${clients} clients ...`);
await phase('warm-up', warmup);
const before = { sfn: stack.stepFunctions.stats(), meter: stack.meter.reading(), cpu: process.cpuUsage() };
console.log(`measuring ${seconds} s ...`);
const windowStartMs = Date.now();
const measured = await phase('measuring', seconds);
const windowEndMs = stopAt;
const after = { sfn: stack.stepFunctions.stats(), meter: stack.meter.reading(), cpu: process.cpuUsage(before.cpu) };
const supervisorsOfWindow = await groupSupervision(measured.samples);
await demo.stop();
await stack.stop();

/**
 * A group's supervisor spends its state transitions over its whole life, most of them after the
 * window for the groups of the window's last buckets. So wait (no new transactions) until every
 * supervisor of a group with a measured transaction has ended, and share each group's transitions
 * among its members: the measured ones' share is what they cost. `complete` is false when some
 * were still running at the timeout (their transitions so far are counted: a lower bound).
 */
async function groupSupervision(measuredSamples: Sample[]): Promise<{ transitions: number; wholeTransitions: number; groups: number; complete: boolean }> {
  const groupOf = (s: Sample) => {
    const group = groupOfTx.get(s.txId);
    if (group === undefined) throw new Error(`transaction ${s.txId} ended, but its creation was not seen`);
    return group;
  };
  const members = new Map<string, { all: number; measured: number }>();
  for (const s of allSamples) {
    const g = members.get(groupOf(s)) ?? { all: 0, measured: 0 };
    g.all++;
    members.set(groupOf(s), g);
  }
  for (const s of measuredSamples) members.get(groupOf(s))!.measured++;
  const groups = [...members].filter(([, m]) => m.measured > 0).map(([g]) => g);
  // An execution's name is its group's, with `-g<generation>` for a later generation.
  const groupOfExecution = (name: string) => name.replace(/-g\d+$/, '');
  const wanted = new Set(groups);
  const running = () => stack.stepFunctions.executionStats().filter((e) => e.status === 'RUNNING' && wanted.has(groupOfExecution(e.name))).length;
  const t0 = Date.now();
  let lastReport = t0;
  while (running() > 0 && Date.now() - t0 < SUPERVISORS_TIMEOUT_MS) {
    if (Date.now() - lastReport >= PROGRESS_EVERY_MS) {
      lastReport = Date.now();
      console.log(`[bench] waiting for ${running()} supervisors of the window's ${groups.length} groups to end (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  let transitions = 0;
  let wholeTransitions = 0;
  for (const e of stack.stepFunctions.executionStats()) {
    const m = members.get(groupOfExecution(e.name));
    if (!m || m.measured === 0) continue;
    transitions += (e.stateTransitions * m.measured) / m.all;
    wholeTransitions += e.stateTransitions;
  }
  return { transitions, wholeTransitions, groups: groups.length, complete: running() === 0 };
}

// ---- per transaction --------------------------------------------------------------------------

const n = measured.samples.length;
const per = (x: number) => (n > 0 ? x / n : NaN);
const delta = <T>(rowsAfter: T[], rowsBefore: T[], id: (r: T) => string, value: (r: T) => number) => {
  const old = new Map(rowsBefore.map((r) => [id(r), value(r)]));
  return rowsAfter.map((r) => ({ row: r, delta: value(r) - (old.get(id(r)) ?? 0) })).filter((d) => d.delta !== 0);
};
const m0: MeterReading = before.meter;
const m1: MeterReading = after.meter;

// DynamoDB: the coordinator's tables are those its CDK app provisions; the rest are the participants'.
const coordinatorTables = new Set(stack.outputs.tables);
const dynamoId = (r: MeterReading['dynamodb'][number]) => `${r.table}\u0000${r.index}\u0000${r.key}`;
const writes = delta(m1.dynamodb, m0.dynamodb, dynamoId, (r) => r.writeUnits);
const reads = delta(m1.dynamodb, m0.dynamodb, dynamoId, (r) => r.readUnits);
const totalOf = (rows: typeof writes, side: 'coordinator' | 'participant') =>
  rows.filter((d) => d.row.key === '' && coordinatorTables.has(d.row.table) === (side === 'coordinator')).reduce((sum, d) => sum + d.delta, 0);
const entityName = (table: string, index: string) => (index ? `${table}/index/${index}` : table);
const byEntity = writes.filter((d) => d.row.key === '' && coordinatorTables.has(d.row.table)).sort((a, b) => b.delta - a.delta);
// The hottest key is the one whose writes grow with throughput: a key shared by transactions. A key
// that names one transaction (its record, `<txId>#...`) takes that transaction's writes once, so its
// share per transaction shrinks as the run grows and it never binds; it is left out.
const TX_ID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
const namesOneTransaction = (key: string) => (key.match(TX_ID) ?? []).some((id) => started.has(id));
// A key's share of the transaction rate while it takes writes. Most keys take writes all the time
// (a listing shard, a SKU's lock): their writes over the window's transactions. A supervision
// group's key (`g-<bucket start>-<length>-<shard>` of the `open` index) takes writes only while its
// bucket is current, from the transactions created in it: its writes over the transactions created
// in its bucket (every shard), for buckets wholly inside the window. Spread over the whole window,
// it would look several times cooler than it is while hot.
const BUCKET_KEY = /^g-(\d+)-(\d+)-\d+$/;
const keyShare = (key: string, writeUnits: number): number | undefined => {
  const bucket = BUCKET_KEY.exec(key);
  if (!bucket) return per(writeUnits);
  const fromMs = Number(bucket[1]) * 1000;
  const toMs = fromMs + Number(bucket[2]) * 1000;
  if (fromMs < windowStartMs || toMs > windowEndMs) return undefined;
  const created = measured.samples.filter((s) => s.createdMs >= fromMs && s.createdMs < toMs).length;
  return created > 0 ? writeUnits / created : undefined;
};
const byKey = writes
  .filter((d) => d.row.key !== '' && coordinatorTables.has(d.row.table) && !namesOneTransaction(d.row.key))
  .flatMap((d) => {
    const share = keyShare(d.row.key, d.delta);
    return share === undefined ? [] : [{ ...d, share }];
  })
  .sort((a, b) => b.share - a.share);
const busiest = byEntity[0];
const hottest = byKey[0];

// SQS: by queue and operation (bench/model.ts sqsSide).
const queueName = (url: string) => url.split('/').pop() ?? url;
// One reply queue, or one per participant (`replyQueueUrls`, service -> URL): either shape.
const outputs = stack.outputs as { replyQueueUrl?: string; replyQueueUrls?: Record<string, string> };
const replyQueueUrls = outputs.replyQueueUrls ? Object.values(outputs.replyQueueUrls) : [outputs.replyQueueUrl ?? ''];
const queues = { requestQueues: new Set(Object.values(stack.outputs.participantQueues).map(queueName)), replyQueues: new Set(replyQueueUrls.map(queueName)) };
const requestId = (r: MeterReading['requests'][number]) => `${r.service}|${r.operation}|${r.resource}`;
const requests = delta(m1.requests, m0.requests, requestId, (r) => r.count);
const sqs = { coordinator: new Map<string, number>(), participant: new Map<string, number>() };
for (const { row, delta: d } of requests.filter((x) => x.row.service === 'sqs')) {
  const bucket = sqs[sqsSide(row.operation, row.resource, queues)];
  bucket.set(row.operation, (bucket.get(row.operation) ?? 0) + d);
}
const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
// API requests on the coordinator's routes. The demo's routes are a local addition; the console and
// the events stream are local handlers, which the API does not meter (src/local/apigateway.ts).
const DEMO_ROUTES = /^\/demo(\/|$)/;
const apiRequests = requests.filter((x) => x.row.service === 'apigateway' && !DEMO_ROUTES.test(x.row.resource)).reduce((a, x) => a + x.delta, 0);

// Lambda: every function of the embedded stack is the coordinator's.
const configs = functionConfigs(templates);
const lambdaDeltas = m1.lambda.map((r) => {
  const old = m0.lambda.find((o) => o.fn === r.fn);
  return {
    fn: r.fn,
    invocations: r.invocations - (old?.invocations ?? 0),
    billedMs: r.billedMs - (old?.billedMs ?? 0),
    logBytes: r.logBytes - (old?.logBytes ?? 0),
    platformLogBytes: r.platformLogBytes - (old?.platformLogBytes ?? 0),
  };
});
const functions: FunctionUse[] = lambdaDeltas
  .filter((l) => l.invocations > 0)
  .map((l) => {
    const config = configs.get(l.fn);
    if (!config) throw new Error(`function ${l.fn} is not in the synthesized templates`);
    return { name: l.fn, ...config, invocations: per(l.invocations), billedMs: per(l.billedMs) };
  });
const handlerLogBytes = lambdaDeltas.reduce((a, l) => a + l.logBytes, 0);
const platformLogBytes = lambdaDeltas.reduce((a, l) => a + l.platformLogBytes, 0);

const sfn = (k: keyof LocalStepFunctionsStats) => after.sfn[k] - before.sfn[k];
const perTransaction: PerTransaction = {
  // Each group's transitions over its whole life, shared among its members (groupSupervision).
  stateTransitions: per(supervisorsOfWindow.transitions),
  startExecutions: per(sfn('executionsStarted')),
  taskCallbacks: per(sfn('callbacks') + sfn('heartbeats')),
  lambdaInvocations: per(lambdaDeltas.reduce((a, l) => a + l.invocations, 0)),
  dynamodbWriteUnits: per(totalOf(writes, 'coordinator')),
  dynamodbReadUnits: per(totalOf(reads, 'coordinator')),
  sqsRequests: per(sum(sqs.coordinator)),
  apiRequests: per(apiRequests),
  eventsPublished: per(m1.eventsPublished - m0.eventsPublished),
  logBytes: per(handlerLogBytes + platformLogBytes),
};
const kind = readApiKind(templates);
// The api function (logical id `Functionsapi<hash>` in the coordinator's stack): its seconds per
// transaction say how many api instances a rate keeps busy, each starting every group it sees once.
const apiSeconds = functions.filter((f) => /Functionsapi[0-9A-F]{8}$/.test(f.name)).reduce((sum, f) => sum + f.billedMs / 1000, 0);
const hottestOther = byKey.find((d) => !BUCKET_KEY.test(d.row.key));
const model: ModelInput = {
  perTransaction,
  functions,
  apiKind: kind,
  taskResults: per(sfn('callbacks')),
  taskHeartbeats: per(sfn('heartbeats')),
  putEventsRequests: per(requests.filter((x) => x.row.service === 'events').reduce((a, x) => a + x.delta, 0)),
  busiestTable: { name: busiest ? entityName(busiest.row.table, busiest.row.index) : '', writeUnitsPerTransaction: per(busiest?.delta ?? 0) },
  hottestKey: {
    table: hottest?.row.table ?? '',
    index: hottest?.row.index || null,
    key: hottest?.row.key ?? '',
    writeUnitsPerTransaction: hottest?.share ?? 0,
  },
  supervision: {
    ...supervision,
    transitionsPerGroup: supervisorsOfWindow.groups > 0 ? supervisorsOfWindow.wholeTransitions / supervisorsOfWindow.groups : 0,
    apiSecondsPerTransaction: apiSeconds,
  },
  hottestOtherKeyWriteUnits: hottestOther?.share ?? 0,
};

// ---- report -----------------------------------------------------------------------------------

const round = (x: number, digits = 3) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : x);
const roundAll = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? round(v) : v])) as T;
const cap = capacity(model);
const atCapacity = cap.defaultQuotas.txPerSecond === null ? null : { rate: cap.defaultQuotas.txPerSecond, model: atRate(model, cap.defaultQuotas.txPerSecond) };
const roundCap = (c: { txPerSecond: number | null }) => ({ ...c, txPerSecond: c.txPerSecond === null ? null : Math.round(c.txPerSecond) });
const decisions = measured.samples.map((s) => s.decisionMs);
const result = {
  clients,
  seconds: round(measured.elapsedS, 1),
  txPerSecond: round(n / measured.elapsedS, 1),
  decisionMs: { p50: pct(decisions, 50), p99: pct(decisions, 99) },
  apiKind: kind,
  perTransaction: roundAll(perTransaction),
  participantSide: roundAll({ sqsRequests: per(sum(sqs.participant)), dynamodbWriteUnits: per(totalOf(writes, 'participant')) }),
  busiestTable: roundAll(model.busiestTable),
  hottestKey: roundAll(model.hottestKey),
  costPerMillionUsd: round(costPerMillionUsd(model), 2),
  capacity: { defaultQuotas: roundCap(cap.defaultQuotas), raisedQuotas: roundCap(cap.raisedQuotas) },
  // The cost per million if transactions came at the default-quota capacity: supervision's
  // per-group share spread over that rate, everything else as measured (bench/model.ts atRate).
  costAtCapacity: atCapacity && { txPerSecond: Math.round(atCapacity.rate), costPerMillionUsd: round(costPerMillionUsd(atCapacity.model), 2) },
};

const fmt = (x: number, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));
const table = (rows: string[][]) => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) console.log('  ' + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
};
/** The cost lines of a model and their total, uses to `digits` decimals (bytes as whole numbers). */
const costTable = (m: typeof model, digits: number) =>
  table([['item', 'per tx', 'unit', 'USD/M'], ...costLines(m).map((l) => [l.item, fmt(l.usePerTransaction, l.unit === 'bytes' ? 0 : digits), l.unit, fmt(l.usdPerMillion)]), ['total', '', '', fmt(costPerMillionUsd(m))]]);
const committed = measured.samples.filter((s) => s.status === 'COMMITTED').length;
console.log('');
console.log(`${n} transactions in ${fmt(measured.elapsedS, 1)} s with ${clients} clients: ${fmt(n / measured.elapsedS, 1)} tx/s, ${committed} committed`);
// The process's CPU time (every thread: the stack, its emulators' workers, the demo, the bench):
// what a transaction costs the embedded stack, steadier than wall-clock time on a busy machine.
console.log(`CPU time ${fmt(per((after.cpu.user + after.cpu.system) / 1000), 0)} ms per transaction (all threads of this process)`);
// Every request one of the emulators served, either side: each is an SDK call (or the bench's own
// POST) that this one process makes and serves, so they are what a transaction costs the embedded stack.
const byService = new Map<string, number>();
for (const { row, delta: d } of requests) byService.set(row.service, (byService.get(row.service) ?? 0) + d);
const byOperation = new Map<string, number>();
for (const { row, delta: d } of requests) byOperation.set(`${row.service} ${row.operation}`, (byOperation.get(`${row.service} ${row.operation}`) ?? 0) + d);
console.log(`requests served per transaction, both sides: ${[...byService].sort((a, b) => b[1] - a[1]).map(([service, c]) => `${service} ${fmt(per(c), 1)}`).join(', ')}`);
console.log(`  by operation: ${[...byOperation].sort((a, b) => b[1] - a[1]).map(([op, c]) => `${op} ${fmt(per(c), 1)}`).join(', ')}`);
console.log(
  `supervision (${supervision.shards} shards x ${supervision.bucketSeconds} s buckets): ${supervisorsOfWindow.groups} groups held the window's transactions, ${fmt(supervisorsOfWindow.groups > 0 ? supervisorsOfWindow.wholeTransitions / supervisorsOfWindow.groups : NaN, 1)} state transitions each; their supervisors ${supervisorsOfWindow.complete ? 'all ended' : `had NOT all ended after ${SUPERVISORS_TIMEOUT_MS / 1000} s (their transitions so far are counted: a lower bound)`}`,
);
console.log(`time to decision p50 ${pct(decisions, 50)} ms, p99 ${pct(decisions, 99)} ms; to end p50 ${pct(measured.samples.map((s) => s.endMs), 50)} ms, p99 ${pct(measured.samples.map((s) => s.endMs), 99)} ms`);
console.log('');
console.log('Per transaction, coordinator side (measured at the emulators):');
table([
  ['state transitions (their groups\' whole life, shared by members)', fmt(perTransaction.stateTransitions)],
  ['  counted inside the window only', fmt(per(sfn('stateTransitions')))],
  ['StartExecution', fmt(perTransaction.startExecutions)],
  ['task callbacks', fmt(perTransaction.taskCallbacks)],
  ['Lambda invocations', fmt(perTransaction.lambdaInvocations)],
  ...functions.map((f) => [`  ${f.name}`, `${fmt(f.invocations)} x ${fmt(f.billedMs / Math.max(f.invocations, 1e-9), 1)} ms`]),
  ['DynamoDB write units', fmt(perTransaction.dynamodbWriteUnits)],
  ...byEntity.map((d) => [`  ${entityName(d.row.table, d.row.index)}`, fmt(per(d.delta))]),
  ['DynamoDB read units', fmt(perTransaction.dynamodbReadUnits)],
  ...reads
    .filter((d) => d.row.key === '' && coordinatorTables.has(d.row.table))
    .sort((a, b) => b.delta - a.delta)
    .map((d) => [`  ${entityName(d.row.table, d.row.index)}`, fmt(per(d.delta))]),
  ['SQS requests', fmt(perTransaction.sqsRequests)],
  ...[...sqs.coordinator].sort().map(([op, c]) => [`  ${op}`, fmt(per(c))]),
  ['API requests', fmt(perTransaction.apiRequests)],
  ['events published', `${fmt(perTransaction.eventsPublished)} in ${fmt(model.putEventsRequests)} PutEvents calls`],
  ['log bytes', `${fmt(perTransaction.logBytes, 0)} (${fmt(per(handlerLogBytes), 0)} from handlers, ${fmt(per(platformLogBytes), 0)} START/END/REPORT)`],
]);
console.log(`  busiest table: ${model.busiestTable.name} ${fmt(model.busiestTable.writeUnitsPerTransaction)} WRU/tx`);
console.log(`  hottest key shared by transactions: ${model.hottestKey.table}${model.hottestKey.index ? `/index/${model.hottestKey.index}` : ''} "${model.hottestKey.key}" ${fmt(model.hottestKey.writeUnitsPerTransaction, 3)} WRU/tx`);
console.log(`Participant side: ${fmt(result.participantSide.sqsRequests)} SQS requests (${[...sqs.participant].sort().map(([op, c]) => `${op} ${fmt(per(c))}`).join(', ')}), ${fmt(result.participantSide.dynamodbWriteUnits)} DynamoDB write units`);
console.log('');
console.log('Cost per million transactions, coordinator side (us-east-1 list prices, bench/model.ts):');
costTable(model, 3);
if (atCapacity) {
  console.log(`At the default-quota capacity (${fmt(atCapacity.rate, 0)} tx/s), supervision's per-group share spread over that rate, the rest as measured:`);
  costTable(atCapacity.model, 4);
}
console.log('');
console.log('Capacity: transactions per second each quota allows (quota / use per transaction):');
const raised = raisedQuotas(model);
const raisedRows = capacityRows(model, raised.quotas, raised.shards);
table([
  ['quota', 'limit', 'per tx', 'tx/s', 'raised tx/s'],
  ...capacityRows(model).map((r, i) => [
    r.name,
    Number.isFinite(r.limit) ? `${r.limit} ${r.unit}` : 'unlimited',
    fmt(r.usePerTransaction, 3),
    r.txPerSecond === null ? '-' : fmt(r.txPerSecond, 0),
    raisedRows[i]!.txPerSecond === null ? '-' : fmt(raisedRows[i]!.txPerSecond!, 0),
  ]),
]);
const supervisionUse = model.supervision!;
console.log(
  `  StartExecution: ${fmt(perTransaction.startExecutions, 3)} per transaction measured, once per group: ${fmt(groupsPerSecond(supervisionUse), 2)} calls/s whatever the rate; group claims modelled at ${fmt(groupClaimsPerTransaction(supervisionUse), 3)} write units per transaction = (${supervision.shards} shards / ${supervision.bucketSeconds} s) x ${fmt(apiSeconds, 3)} api seconds per transaction, as many api instances each claim every group they see`,
);
console.log(`  state transitions: ${fmt(supervisionUse.transitionsPerGroup, 1)} per group x ${fmt(groupsPerSecond(supervisionUse), 2)} groups/s, whatever the rate`);
console.log(`  default quotas: ${fmt(cap.defaultQuotas.txPerSecond ?? NaN, 0)} tx/s, bound by ${cap.defaultQuotas.bindingQuota}`);
console.log(`  raised quotas:  ${fmt(cap.raisedQuotas.txPerSecond ?? NaN, 0)} tx/s, bound by ${cap.raisedQuotas.bindingQuota} (raises: ${cap.raisedQuotas.raises.join('; ') || 'none'})`);
console.log('');
console.log(JSON.stringify(result, null, 2));
if (values.json) {
  await writeFile(values.json, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`[bench] wrote ${values.json}`);
}

// Every benchmark order can commit (one unit of a 1000-unit SKU, one cent, its own order id): a run
// in which one did not, or none finished, measured a broken stack. Fail it (CI runs a short one).
if (n === 0 || committed < n) {
  console.error(`[bench] ${n} transactions measured, ${committed} committed: expected every one to commit`);
  process.exitCode = 1;
}
