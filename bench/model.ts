// The cost and capacity model of the throughput benchmark: what a measured transaction costs at
// list prices, and how many transactions per second each AWS quota allows, in one formula
// (quota / use per transaction; the smallest is the binding one). Pure: bench/throughput.ts
// measures, this module prices and divides. Prices are us-east-1 list prices; quotas are the
// defaults of us-east-1. Each carries the page it comes from.

import type { CfnTemplate } from '../src/local/template';

// ---- prices ------------------------------------------------------------------------------------

/** us-east-1 list prices in USD (first pricing tier; free tiers ignored). */
export const PRICES_USD = {
  // https://aws.amazon.com/lambda/pricing/ : $0.20 per 1M requests.
  lambdaRequest: 0.2 / 1e6,
  // https://aws.amazon.com/lambda/pricing/ : duration, first 6 billion GB-seconds a month,
  // $0.0000166667 per GB-s on x86, $0.0000133334 per GB-s on Arm (Graviton).
  lambdaGbSecond: { x86_64: 0.0000166667, arm64: 0.0000133334 },
  // https://aws.amazon.com/dynamodb/pricing/on-demand/ : $0.625 per million write request units.
  dynamodbWriteUnit: 0.625 / 1e6,
  // https://aws.amazon.com/dynamodb/pricing/on-demand/ : $0.125 per million read request units.
  dynamodbReadUnit: 0.125 / 1e6,
  // https://aws.amazon.com/step-functions/pricing/ : Standard workflows, $0.025 per 1,000 state transitions.
  stateTransition: 0.025 / 1e3,
  // https://aws.amazon.com/sqs/pricing/ : standard queues, $0.40 per million requests (each 64 KB chunk a request).
  sqsRequest: 0.4 / 1e6,
  // https://aws.amazon.com/api-gateway/pricing/ : HTTP APIs $1.00 per million (first 300M),
  // REST APIs $3.50 per million (first 333M).
  apiRequest: { HTTP: 1.0 / 1e6, REST: 3.5 / 1e6 },
  // https://aws.amazon.com/eventbridge/pricing/ : custom events, $1.00 per million (64 KB chunks).
  event: 1.0 / 1e6,
  // https://aws.amazon.com/cloudwatch/pricing/ : logs, standard class, collect (data ingestion) $0.50 per GB.
  logGb: 0.5,
} as const;

/** CloudWatch bills a GB as 2^30 bytes. */
const GB = 2 ** 30;

export type ApiKind = 'REST' | 'HTTP';
export type Architecture = keyof typeof PRICES_USD.lambdaGbSecond;

// ---- what one transaction uses ------------------------------------------------------------------

/** What one transaction uses on the coordinator's side, as measured (averages over a run). */
export interface PerTransaction {
  stateTransitions: number;
  startExecutions: number;
  /** SendTaskSuccess, SendTaskFailure and SendTaskHeartbeat requests. */
  taskCallbacks: number;
  lambdaInvocations: number;
  dynamodbWriteUnits: number;
  dynamodbReadUnits: number;
  sqsRequests: number;
  apiRequests: number;
  eventsPublished: number;
  logBytes: number;
}

/** One coordinator function's share of a transaction: its configuration and billed time. */
export interface FunctionUse {
  name: string;
  memoryMb: number;
  architecture: Architecture;
  invocations: number;
  billedMs: number;
}

/**
 * How transactions are grouped for supervision (the `supervisionShards` and
 * `supervisionBucketSeconds` context settings) and what supervision measured: what is per group,
 * not per transaction, so it does not scale with the rate.
 */
export interface SupervisionUse {
  /** Z: groups per bucket. */
  shards: number;
  /** B: a bucket's length. */
  bucketSeconds: number;
  /** State transitions of one group's supervisor over its whole life (measured). */
  transitionsPerGroup: number;
  /**
   * Seconds of api function execution per transaction (measured): R times it is the number of
   * api instances a rate R keeps busy. Each instance claims each group it sees once (a conditional
   * put of the group's item, 1 write unit); the one claim that wins calls StartExecution.
   */
  apiSecondsPerTransaction: number;
}

export interface ModelInput {
  perTransaction: PerTransaction;
  functions: FunctionUse[];
  apiKind: ApiKind;
  /** SendTaskSuccess + SendTaskFailure per transaction (one quota bucket each; counted together). */
  taskResults: number;
  /** SendTaskHeartbeat per transaction (a bucket of its own). */
  taskHeartbeats: number;
  /** PutEvents calls per transaction (each carries 1 to 10 entries; the quota counts calls). */
  putEventsRequests: number;
  busiestTable: { name: string; writeUnitsPerTransaction: number };
  hottestKey: { table: string; index: string | null; key: string; writeUnitsPerTransaction: number };
  /** Absent: every use is taken as measured per transaction. */
  supervision?: SupervisionUse;
  /** The hottest key that is not a supervision group's (a group key's share falls as 1/Z; this one does not). */
  hottestOtherKeyWriteUnits?: number;
}

// ---- cost ---------------------------------------------------------------------------------------

export interface CostLine {
  item: string;
  usePerTransaction: number;
  unit: string;
  usdPerMillion: number;
}

/** The coordinator's cost of one million transactions, line by line (list prices above). */
export function costLines(input: ModelInput): CostLine[] {
  const p = input.perTransaction;
  const perMillion = (use: number, price: number) => use * price * 1e6;
  const gbSeconds = input.functions.reduce((sum, f) => sum + (f.billedMs / 1000) * (f.memoryMb / 1024), 0);
  const durationUsd = input.functions.reduce((sum, f) => sum + (f.billedMs / 1000) * (f.memoryMb / 1024) * PRICES_USD.lambdaGbSecond[f.architecture], 0);
  return [
    { item: 'Lambda requests', usePerTransaction: p.lambdaInvocations, unit: 'invocations', usdPerMillion: perMillion(p.lambdaInvocations, PRICES_USD.lambdaRequest) },
    { item: 'Lambda duration', usePerTransaction: gbSeconds, unit: 'GB-s', usdPerMillion: durationUsd * 1e6 },
    { item: 'DynamoDB writes', usePerTransaction: p.dynamodbWriteUnits, unit: 'WRU', usdPerMillion: perMillion(p.dynamodbWriteUnits, PRICES_USD.dynamodbWriteUnit) },
    { item: 'DynamoDB reads', usePerTransaction: p.dynamodbReadUnits, unit: 'RRU', usdPerMillion: perMillion(p.dynamodbReadUnits, PRICES_USD.dynamodbReadUnit) },
    { item: 'Step Functions (Standard)', usePerTransaction: p.stateTransitions, unit: 'transitions', usdPerMillion: perMillion(p.stateTransitions, PRICES_USD.stateTransition) },
    { item: 'SQS', usePerTransaction: p.sqsRequests, unit: 'requests', usdPerMillion: perMillion(p.sqsRequests, PRICES_USD.sqsRequest) },
    { item: `API Gateway (${input.apiKind})`, usePerTransaction: p.apiRequests, unit: 'requests', usdPerMillion: perMillion(p.apiRequests, PRICES_USD.apiRequest[input.apiKind]) },
    { item: 'EventBridge', usePerTransaction: p.eventsPublished, unit: 'events', usdPerMillion: perMillion(p.eventsPublished, PRICES_USD.event) },
    { item: 'CloudWatch Logs ingestion', usePerTransaction: p.logBytes, unit: 'bytes', usdPerMillion: perMillion(p.logBytes / GB, PRICES_USD.logGb) },
  ];
}

export function costPerMillionUsd(input: ModelInput): number {
  return costLines(input).reduce((sum, l) => sum + l.usdPerMillion, 0);
}

/**
 * The same use at a sustained `rate`: a group's supervision (its StartExecution and its state
 * transitions, measured per group) is spent once per group whatever its size, (Z / B) groups a
 * second, so its share per transaction is that over `rate`. Everything else stays as measured,
 * including what only falls as batches fill (receives, deletes, invocations, PutEvents calls): at a
 * higher rate those are lower still, which this does not assume.
 */
export function atRate(input: ModelInput, rate: number): ModelInput {
  const s = input.supervision;
  if (!s || !(rate > 0)) return input;
  const groups = groupsPerSecond(s);
  return { ...input, perTransaction: { ...input.perTransaction, stateTransitions: (groups * s.transitionsPerGroup) / rate, startExecutions: groups / rate } };
}

// ---- capacity -----------------------------------------------------------------------------------

export interface Quota {
  name: string;
  /** The quota: units per second (or concurrent executions). Infinity: no practical limit. */
  limit: number;
  /** The unit the quota counts. */
  unit: string;
  /** Where the figure comes from. */
  source: string;
  /** Can a Service Quotas request raise it? */
  adjustable: boolean;
}

const DYNAMODB_QUOTAS = 'https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html';
const DYNAMODB_PARTITIONS = 'https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html';
const SFN_QUOTAS = 'https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html';
const LAMBDA_QUOTAS = 'https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html';
const APIGW_QUOTAS = 'https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html';
const SQS_QUOTAS = 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-messages.html';
const EVENTS_QUOTAS = 'https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html';

export type QuotaId =
  | 'dynamodbTableWrites'
  | 'dynamodbPartitionWrites'
  | 'startExecution'
  | 'stateTransitions'
  | 'sendTaskResult'
  | 'sendTaskHeartbeat'
  | 'lambdaConcurrency'
  | 'apiRequests'
  | 'sqsRequests'
  | 'putEvents';

/** Default quotas of an account in us-east-1. */
export const DEFAULT_QUOTAS: Record<QuotaId, Quota> = {
  // "Per table: 40,000 read request units and 40,000 write request units" (on-demand); a table
  // and each of its global secondary indexes count separately.
  dynamodbTableWrites: { name: 'DynamoDB write units per on-demand table', limit: 40_000, unit: 'WRU/s', source: DYNAMODB_QUOTAS, adjustable: true },
  // "each partition ... can serve up to 3,000 read units or 1,000 write units per second": a
  // partition key value lives in one partition, so this is the ceiling of its writes. Not adjustable.
  dynamodbPartitionWrites: { name: 'DynamoDB write units per partition key value', limit: 1_000, unit: 'WRU/s', source: DYNAMODB_PARTITIONS, adjustable: false },
  // Standard workflows, us-east-1: StartExecution bucket 1,300, refill 300 per second.
  startExecution: { name: 'Step Functions StartExecution refill (Standard, us-east-1)', limit: 300, unit: 'calls/s', source: SFN_QUOTAS, adjustable: true },
  // Standard workflows, us-east-1: StateTransition refill 5,000 per second (bucket 5,000).
  stateTransitions: { name: 'Step Functions state transitions refill (Standard, us-east-1)', limit: 5_000, unit: 'transitions/s', source: SFN_QUOTAS, adjustable: true },
  // SendTaskSuccess and SendTaskFailure: refill 500 per second each (bucket 3,000), us-east-1.
  sendTaskResult: { name: 'Step Functions SendTaskSuccess/SendTaskFailure refill (us-east-1)', limit: 500, unit: 'calls/s', source: SFN_QUOTAS, adjustable: true },
  sendTaskHeartbeat: { name: 'Step Functions SendTaskHeartbeat refill (us-east-1)', limit: 500, unit: 'calls/s', source: SFN_QUOTAS, adjustable: true },
  // "Concurrent executions: 1,000 ... can be increased up to tens of thousands" per account and Region.
  lambdaConcurrency: { name: 'Lambda concurrent executions per account-region', limit: 1_000, unit: 'concurrent executions', source: LAMBDA_QUOTAS, adjustable: true },
  // "Throttle quota per account, per Region across HTTP APIs, REST APIs ...: 10,000 requests per second".
  apiRequests: { name: 'API Gateway requests per account-region', limit: 10_000, unit: 'requests/s', source: APIGW_QUOTAS, adjustable: true },
  // Standard queues "support a nearly unlimited number of transactions per second (TPS) per API action".
  sqsRequests: { name: 'SQS standard queue requests', limit: Infinity, unit: 'requests/s', source: SQS_QUOTAS, adjustable: false },
  // "PutEvents throttle limit in transactions per second", us-east-1: 10,000; a transaction is a
  // PutEvents call, of 1 to 10 entries (the coordinator sends up to 10 decisions' events in one).
  putEvents: { name: 'EventBridge PutEvents (us-east-1)', limit: 10_000, unit: 'requests/s', source: EVENTS_QUOTAS, adjustable: true },
};

/**
 * Raises an account can ask for through Service Quotas, sized for the 20,000 tx/s target.
 * Assumptions, not documented maxima: each is a request AWS grants case by case (Lambda
 * concurrency "up to tens of thousands"; DynamoDB's table-level throughput is adjustable). The
 * per-partition ceiling cannot be raised.
 */
export const RAISES: Partial<Record<QuotaId, { limit: number; note: string }>> = {
  lambdaConcurrency: { limit: 30_000, note: 'Lambda concurrent executions 1,000 -> 30,000' },
  dynamodbTableWrites: { limit: 300_000, note: 'DynamoDB table-level write throughput 40,000 -> 300,000 WRU/s' },
  startExecution: { limit: 1_500, note: 'Step Functions StartExecution refill 300 -> 1,500/s' },
  stateTransitions: { limit: 25_000, note: 'Step Functions state transitions refill 5,000 -> 25,000/s' },
  sendTaskResult: { limit: 2_500, note: 'Step Functions SendTaskSuccess/Failure refill 500 -> 2,500/s' },
  sendTaskHeartbeat: { limit: 2_500, note: 'Step Functions SendTaskHeartbeat refill 500 -> 2,500/s' },
  apiRequests: { limit: 30_000, note: 'API Gateway account throttle 10,000 -> 30,000 requests/s' },
  putEvents: { limit: 20_000, note: 'EventBridge PutEvents 10,000 -> 20,000/s' },
};

/** Z / B: supervision groups a second (each started once), whatever the transaction rate. */
export function groupsPerSecond(s: SupervisionUse, shards = s.shards): number {
  return shards / s.bucketSeconds;
}

/**
 * Write units per transaction of the group claims, an upper bound: a rate R keeps R x (api seconds
 * per transaction) api instances busy, and each claims each of the Z / B groups a second once.
 */
export function groupClaimsPerTransaction(s: SupervisionUse, shards = s.shards): number {
  return groupsPerSecond(s, shards) * s.apiSecondsPerTransaction;
}

/** A supervision group's key of the `open` index: `g-<bucket start>-<bucket length>-<shard>`. */
const GROUP_KEY = /^g-\d+-\d+-\d+$/;

/**
 * How much of each quota one transaction uses; with `shards`, as if supervision had that many
 * shards: a group key takes 2 write units per transaction of its group (created and finished), so
 * its share of the rate is 2/Z; each api instance claims each group it sees once, so the claims add
 * (Z / B) x the api's seconds per transaction to the log table's write units whatever the rate, and
 * a group's own item takes B⁻¹ x the api's seconds per transaction while its bucket is current.
 * StartExecution is once per group: (Z / B) calls a second whatever the rate (capacityRows).
 */
export function usePerTransaction(input: ModelInput, shards = input.supervision?.shards): Record<QuotaId, number> {
  const p = input.perTransaction;
  const s = input.supervision;
  const groupKeyHottest = GROUP_KEY.test(input.hottestKey.key);
  const supervised = s !== undefined && shards !== undefined;
  const partition =
    supervised && groupKeyHottest
      ? Math.max(input.hottestOtherKeyWriteUnits ?? 0, (input.hottestKey.writeUnitsPerTransaction * s.shards) / shards)
      : input.hottestKey.writeUnitsPerTransaction;
  // Upper bounds: every instance claims every group (the measured run's own claims are in the
  // busiest table's figure already, and counted again here).
  const claims = supervised ? groupClaimsPerTransaction(s, shards) : 0;
  const claimKey = supervised ? s.apiSecondsPerTransaction / s.bucketSeconds : 0;
  return {
    dynamodbTableWrites: input.busiestTable.writeUnitsPerTransaction + claims,
    dynamodbPartitionWrites: Math.max(partition, claimKey),
    startExecution: p.startExecutions,
    stateTransitions: p.stateTransitions,
    sendTaskResult: input.taskResults,
    sendTaskHeartbeat: input.taskHeartbeats,
    // Concurrency is invocations x duration: the seconds of execution a transaction occupies.
    lambdaConcurrency: input.functions.reduce((sum, f) => sum + f.billedMs / 1000, 0),
    apiRequests: p.apiRequests,
    sqsRequests: p.sqsRequests,
    putEvents: input.putEventsRequests,
  };
}

export interface CapacityRow {
  id: QuotaId;
  name: string;
  limit: number;
  unit: string;
  usePerTransaction: number;
  /** limit / use; null when the transaction does not use the quota or it has no practical limit. */
  txPerSecond: number | null;
  source: string;
}

/**
 * Transactions per second each quota allows. State transitions and StartExecution are per group
 * with `supervision`: (Z / B) groups a second, each started once and spending its transitions
 * whatever its size, so they bind at no rate (null) unless they exceed the quota at any rate (0).
 */
export function capacityRows(input: ModelInput, quotas: Record<QuotaId, Quota> = DEFAULT_QUOTAS, shards = input.supervision?.shards): CapacityRow[] {
  const use = usePerTransaction(input, shards);
  const s = input.supervision;
  return (Object.keys(quotas) as QuotaId[]).map((id) => {
    const q = quotas[id];
    const u = use[id];
    let txPerSecond = u > 0 && Number.isFinite(q.limit) ? q.limit / u : null;
    if (id === 'stateTransitions' && s && shards !== undefined) txPerSecond = groupsPerSecond(s, shards) * s.transitionsPerGroup <= q.limit ? null : 0;
    if (id === 'startExecution' && s && shards !== undefined) txPerSecond = groupsPerSecond(s, shards) <= q.limit ? null : 0;
    return { id, name: q.name, limit: q.limit, unit: q.unit, usePerTransaction: u, txPerSecond, source: q.source };
  });
}

export interface Capacity {
  txPerSecond: number | null;
  bindingQuota: string | null;
}

/** The binding quota: the smallest transactions-per-second over every quota the transaction uses. */
export function binding(rows: CapacityRow[]): Capacity {
  let best: CapacityRow | undefined;
  for (const r of rows) if (r.txPerSecond !== null && (!best || r.txPerSecond < best.txPerSecond!)) best = r;
  return best ? { txPerSecond: best.txPerSecond, bindingQuota: best.name } : { txPerSecond: null, bindingQuota: null };
}

/** Shard counts the raised case may choose from (the `supervisionShards` context setting). */
export const SHARD_CHOICES = [4, 8, 12, 16, 24, 32, 48, 64, 96, 128];

/**
 * The default quotas with every raise applied that changes a quota this transaction uses, and the
 * `supervisionShards` the raised quotas serve best: more shards cool the `open` index's group keys
 * (a per-partition limit no raise lifts), fewer make fewer group claims (each api instance claims
 * each group it sees).
 */
export function raisedQuotas(input: ModelInput): { quotas: Record<QuotaId, Quota>; raises: string[]; shards?: number } {
  const use = usePerTransaction(input);
  const quotas = { ...DEFAULT_QUOTAS };
  const raises: string[] = [];
  for (const [id, raise] of Object.entries(RAISES) as [QuotaId, { limit: number; note: string }][]) {
    if (use[id] <= 0) continue;
    quotas[id] = { ...quotas[id], limit: raise.limit };
    raises.push(raise.note);
  }
  const s = input.supervision;
  if (!s) return { quotas, raises };
  let best = s.shards;
  for (const z of SHARD_CHOICES) {
    if ((binding(capacityRows(input, quotas, z)).txPerSecond ?? 0) > (binding(capacityRows(input, quotas, best)).txPerSecond ?? 0)) best = z;
  }
  if (best !== s.shards) raises.push(`context supervisionShards ${s.shards} -> ${best} (a setting, not a quota: the open index's group keys, 2 write units per transaction on one of Z keys)`);
  return { quotas, raises, shards: best };
}

export interface CapacityReport {
  defaultQuotas: Capacity;
  raisedQuotas: Capacity & { raises: string[] };
}

export function capacity(input: ModelInput): CapacityReport {
  const raised = raisedQuotas(input);
  return {
    defaultQuotas: binding(capacityRows(input)),
    raisedQuotas: { ...binding(capacityRows(input, raised.quotas, raised.shards)), raises: raised.raises },
  };
}

// ---- the synthesized template -------------------------------------------------------------------

export interface Templates {
  stackName: string;
  template: CfnTemplate;
}

/**
 * The API's kind, read from the template: an AWS::ApiGatewayV2::Api (HTTP API; the coordinator's
 * routes use IAM authorization) is "HTTP", an AWS::ApiGateway::RestApi is "REST".
 */
export function apiKind(stacks: Templates[]): ApiKind {
  const types = stacks.flatMap((s) => Object.values(s.template.Resources ?? {}).map((r) => r.Type));
  const http = types.includes('AWS::ApiGatewayV2::Api');
  const rest = types.includes('AWS::ApiGateway::RestApi');
  if (http === rest) throw new Error(`expected exactly one kind of API in the templates, found ${http ? 'both an HTTP and a REST API' : 'neither'}`);
  return http ? 'HTTP' : 'REST';
}

/**
 * Each Lambda function's memory and architecture, by the name the embedded stack gives it
 * (FunctionName if set, else `<stack>-<logical id>`, as src/local/provision.ts names it).
 */
export function functionConfigs(stacks: Templates[]): Map<string, { memoryMb: number; architecture: Architecture }> {
  const out = new Map<string, { memoryMb: number; architecture: Architecture }>();
  for (const { stackName, template } of stacks) {
    for (const [id, r] of Object.entries(template.Resources ?? {})) {
      if (r.Type !== 'AWS::Lambda::Function') continue;
      const p = r.Properties ?? {};
      const name = typeof p.FunctionName === 'string' && p.FunctionName ? p.FunctionName : `${stackName}-${id}`;
      const architecture = ((p.Architectures as string[] | undefined)?.[0] ?? 'x86_64') as Architecture;
      if (!(architecture in PRICES_USD.lambdaGbSecond)) throw new Error(`function ${name}: no price for architecture ${architecture}`);
      out.set(name, { memoryMb: Number(p.MemorySize ?? 128), architecture });
    }
  }
  return out;
}

// ---- who pays for a request ---------------------------------------------------------------------

export type Side = 'coordinator' | 'participant';

const CONSUMER_OPERATIONS = new Set(['ReceiveMessage', 'DeleteMessage', 'DeleteMessageBatch', 'ChangeMessageVisibility', 'ChangeMessageVisibilityBatch']);
const SEND_OPERATIONS = new Set(['SendMessage', 'SendMessageBatch']);

/**
 * Whose code makes an SQS request, decided by queue and operation: participants consume their
 * request queues (receive, delete, change visibility) and send to the coordinator's reply queue(s);
 * everything else is the coordinator's (its functions' sends to request queues and dead-letter
 * queues, and its reply function's event source mapping, whose polling AWS bills to the queue's
 * owner like any request on the queue).
 */
export function sqsSide(operation: string, queue: string, queues: { requestQueues: ReadonlySet<string>; replyQueues: ReadonlySet<string> }): Side {
  if (queues.requestQueues.has(queue) && CONSUMER_OPERATIONS.has(operation)) return 'participant';
  if (queues.replyQueues.has(queue) && SEND_OPERATIONS.has(operation)) return 'participant';
  return 'coordinator';
}
