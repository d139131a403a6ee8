// Throughput and latency of 4-participant demo orders on the embedded stack.
// Usage: npm run bench -- [--clients 16] [--seconds 20] [--warmup 3]
// Prints transactions/s, p50/p99 time to decision and to end (from the log record's own
// timestamps), and per transaction the billable calls the coordinator made, counted at the
// emulators: state transitions, callbacks, SQS requests and DynamoDB writes.
import { parseArgs } from 'node:util';
import { startDemo } from '../src/local/demo-routes';
import { startLocalStack } from '../src/local/stack';

const { values } = parseArgs({
  options: { clients: { type: 'string', default: '16' }, seconds: { type: 'string', default: '20' }, warmup: { type: 'string', default: '3' } },
});
const clients = Number(values.clients);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);

const stack = await startLocalStack({ port: 0 });
const demo = await startDemo(stack);
const api = stack.outputs.apiUrl;

interface Sample { decisionMs: number; endMs: number; status: string }

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

// Executions are named after transactions: wait for their end instead of polling the API, which
// would load the same process that runs the stack.
const waiting = new Map<string, () => void>();
stack.stepFunctions.onExecutionEnd((e) => waiting.get(e.name)?.());

async function waitForEnd(txId: string): Promise<Sample> {
  await new Promise<void>((resolve) => waiting.set(txId, resolve));
  waiting.delete(txId);
  for (;;) {
    const res = await fetch(`${api}/transactions/${txId}`);
    const tx = (await res.json()) as { status: string; createdAt: string; decidedAt?: string; finishedAt?: string };
    if (tx.status === 'COMMITTED' || tx.status === 'ABORTED') {
      const created = Date.parse(tx.createdAt);
      return { decisionMs: Date.parse(tx.decidedAt!) - created, endMs: Date.parse(tx.finishedAt!) - created, status: tx.status };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

let next = 0;
const samples: Sample[] = [];
let measuring = false;
let stopAt = 0;
async function client(): Promise<void> {
  while (Date.now() < stopAt) {
    const txId = await order(next++);
    const s = await waitForEnd(txId);
    if (measuring) samples.push(s);
  }
}

const before = () => ({ sfn: stack.stepFunctions.stats(), meter: stack.meter.snapshot() });
console.log(`warming up ${warmup} s with ${clients} clients ...`);
stopAt = Date.now() + warmup * 1000;
await Promise.all(Array.from({ length: clients }, client));
const b = before();
const t0 = Date.now();
measuring = true;
stopAt = t0 + seconds * 1000;
await Promise.all(Array.from({ length: clients }, client));
const elapsed = (Date.now() - t0) / 1000;
const sfn = stack.stepFunctions.stats();
const meterAfter = stack.meter.snapshot();

const pct = (xs: number[], p: number) => {
  const sorted = [...xs].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
};
const n = samples.length;
const per = (k: keyof typeof sfn) => ((sfn[k] - b.sfn[k]) / n).toFixed(2);
// Emulator requests per transaction, by who pays for them: the coordinator (its log table, its reply
// queue's consumer, its sends to participant queues) or the participants (their tables, their
// queues' consumers, their replies).
const replyQueue = stack.outputs.replyQueueUrl.split('/').pop()!;
const kind = (service: string, op: string, resource: string): string => {
  if (service === 'dynamodb') return resource === stack.outputs.txTable ? 'coordinator' : 'participants';
  if (resource === replyQueue) return op === 'SendMessage' ? 'participants' : 'coordinator';
  return op === 'SendMessage' ? 'coordinator' : 'participants';
};
const calls: Record<string, Record<string, number>> = { coordinator: {}, participants: {} };
for (const row of meterAfter) {
  const prev = b.meter.find((r) => r.service === row.service && r.operation === row.operation && r.resource === row.resource)?.count ?? 0;
  const delta = row.count - prev;
  if (delta <= 0) continue;
  const bucket = calls[kind(row.service, row.operation, row.resource)]!;
  const key = `${row.service}.${row.operation}`;
  bucket[key] = (bucket[key] ?? 0) + delta;
}
const perTx = (bucket: Record<string, number>) => Object.fromEntries(Object.entries(bucket).sort().map(([k, v]) => [k, +(v / n).toFixed(2)]));
const WRITES = ['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem'];
const writes = (bucket: Record<string, number>) => +(Object.entries(bucket).filter(([k]) => WRITES.some((w) => k.endsWith(`.${w}`))).reduce((a, [, v]) => a + v, 0) / n).toFixed(2);
const sqsRequests = (bucket: Record<string, number>) => +(Object.entries(bucket).filter(([k]) => k.startsWith('sqs.')).reduce((a, [, v]) => a + v, 0) / n).toFixed(2);
console.log(JSON.stringify({
  clients,
  seconds: elapsed,
  transactions: n,
  committed: samples.filter((s) => s.status === 'COMMITTED').length,
  tps: +(n / elapsed).toFixed(1),
  decisionMs: { p50: pct(samples.map((s) => s.decisionMs), 50), p99: pct(samples.map((s) => s.decisionMs), 99) },
  endMs: { p50: pct(samples.map((s) => s.endMs), 50), p99: pct(samples.map((s) => s.endMs), 99) },
  perTransaction: {
    stateTransitions: per('stateTransitions'),
    callbacks: per('callbacks'),
    lambdaInvocationsByStateMachine: per('lambdaInvocations'),
    coordinator: { dynamodbWrites: writes(calls.coordinator!), sqsRequests: sqsRequests(calls.coordinator!), calls: perTx(calls.coordinator!) },
    participants: { dynamodbWrites: writes(calls.participants!), sqsRequests: sqsRequests(calls.participants!), calls: perTx(calls.participants!) },
  },
}, null, 2));
await demo.stop();
await stack.stop();
// Every benchmark order can commit (one unit of a 1000-unit SKU, one cent, its own order id): a run
// in which one did not, or none finished, measured a broken stack. Fail it (CI runs a short one).
const committed = samples.filter((s) => s.status === 'COMMITTED').length;
if (n === 0 || committed < n) {
  console.error(`[bench] ${n} transactions measured, ${committed} committed: expected every one to commit`);
  process.exitCode = 1;
}
