import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { METRICS_NAMESPACE, METRICS_SERVICE } from '../src/metrics';
import type { DtcConfig } from './build';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface FunctionsProps {
  config: DtcConfig;
  txTable: dynamodb.ITable;
  /** The lock table (cdk/locks.ts): LOCK_TABLE on every function. */
  lockTable: dynamodb.ITable;
  /** Participant -> its request queue, each with its dead-letter queue (in-doubt copies go there). */
  participantQueues: Readonly<Record<string, sqs.Queue>>;
  /** Participant -> its reply queue: the reply function knows a sender by the queue it came on. */
  replyQueues: Readonly<Record<string, sqs.Queue>>;
  replyDeadLetterQueue: sqs.IQueue;
  /** Decision events go here (DECISION_EVENT_BUS); none when switched off. */
  eventBus?: events.IEventBus;
}

/** The coordinator's Lambda handlers (lambdas/*.ts), their logs, environment and data access. */
export class Functions extends Construct {
  readonly api: nodejs.NodejsFunction;
  readonly supervise: nodejs.NodejsFunction;
  readonly reply: nodejs.NodejsFunction;
  /** GET /transactions/{id} and its waits: a concurrency budget of its own. */
  readonly waiter: nodejs.NodejsFunction;
  /** Builds another coordinator function (lambdas/<name>.ts) with the same props and environment. */
  readonly addHandler: (scope: Construct, name: string, options?: Pick<HandlerOptions, 'reservedConcurrency' | 'retryAttempts'>) => nodejs.NodejsFunction;

  constructor(scope: Construct, id: string, props: FunctionsProps) {
    super(scope, id);
    const { config, txTable, lockTable, participantQueues, replyQueues, replyDeadLetterQueue, eventBus } = props;
    const queueUrls = Object.fromEntries(Object.entries(participantQueues).map(([service, q]) => [service, q.queueUrl]));
    const replyArns = Object.fromEntries(Object.entries(replyQueues).map(([service, q]) => [service, q.queueArn]));
    const deadLetterQueues = Object.entries(participantQueues).flatMap(([service, q]) => (q.deadLetterQueue ? [[service, q.deadLetterQueue.queue] as const] : []));
    const deadLetterUrls = Object.fromEntries(deadLetterQueues.map(([service, q]) => [service, q.queueUrl]));
    // Identical for every function: the embedded local stack runs all handlers in one process with
    // one merged environment. STATE_MACHINE_ARN is added where needed (see CoordinatorStack).
    const environment = {
      TX_TABLE: txTable.tableName,
      LOCK_TABLE: lockTable.tableName,
      PARTICIPANT_QUEUES: Stack.of(this).toJsonString(queueUrls),
      PARTICIPANT_DEAD_LETTER_QUEUES: Stack.of(this).toJsonString(deadLetterUrls),
      REPLY_QUEUE_ARNS: Stack.of(this).toJsonString(replyArns),
      REPLY_DEAD_LETTER_QUEUE_URL: replyDeadLetterQueue.queueUrl,
      ...(eventBus ? { DECISION_EVENT_BUS: eventBus.eventBusName } : {}),
      ...(eventBus && config.finishEvents ? { FINISH_EVENTS: 'true' } : {}),
      ...(config.participantPrincipals ? { PARTICIPANT_PRINCIPALS: Stack.of(this).toJsonString(config.participantPrincipals) } : {}),
      ...(config.participantSenderIds ? { PARTICIPANT_SENDER_IDS: JSON.stringify(config.participantSenderIds) } : {}),
      SUPERVISION_SHARDS: String(config.supervisionShards),
      SUPERVISION_BUCKET_SECONDS: String(config.supervisionBucketSeconds),
      RETENTION_DAYS: String(config.retentionDays),
      DEFAULT_PREPARE_SECONDS: String(config.defaultPrepareSeconds),
      DEFAULT_COMMIT_SECONDS: String(config.defaultCommitSeconds),
      POWERTOOLS_SERVICE_NAME: METRICS_SERVICE,
      POWERTOOLS_LOG_LEVEL: config.logLevel,
      // The namespace the alarms and the dashboard read (cdk/observability.ts).
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      POWERTOOLS_TRACE_ENABLED: String(config.tracing),
      // Responses carry participants' operations: keep them out of traces.
      POWERTOOLS_TRACER_CAPTURE_RESPONSE: 'false',
    };
    const options = { logRetentionDays: config.logRetentionDays, tracing: config.tracing };
    // Reserved concurrency is both a budget nobody else can take and a cap (docs/performance.md, defaults).
    const reserve = (n: number) => (config.reservedConcurrency && n > 0 ? { reservedConcurrency: n } : {});
    this.addHandler = (scope, name, { reservedConcurrency, ...extra } = {}) =>
      handler(scope, name, environment, { ...options, ...extra, ...reserve(reservedConcurrency ?? 0) });
    // Unreserved: starts and reads take from the account's unreserved pool, which the caps below keep free.
    this.api = handler(this, 'api', environment, options);
    // A supervision run reads a whole group (up to MEMBERS_PER_RUN records) and may re-send in bulk.
    // Deadlines and phase two must never starve: a budget of its own.
    this.supervise = handler(this, 'supervise', environment, { ...options, timeout: Duration.seconds(60), ...reserve(config.superviseConcurrency) });
    // Votes decide: a budget of its own, and a cap, so a reply backlog cannot take the API's concurrency.
    this.reply = handler(this, 'reply', environment, { ...options, ...reserve(config.replyConcurrency) });
    // Waiting callers (`?wait=N`, up to 10 s each) hold this function only, and at most
    // `waitConcurrency` of the account's concurrency: they can never starve starts or replies.
    this.waiter = handler(this, 'waiter', environment, { ...options, ...reserve(config.waitConcurrency) });
    this.waiter.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:GetItem'], resources: [txTable.tableArn] }));

    const tableArn = txTable.tableArn;
    const item = (...actions: string[]) => new iam.PolicyStatement({ actions, resources: [tableArn] });
    const index = (name: string, ...actions: string[]) => new iam.PolicyStatement({ actions, resources: [`${tableArn}/index/${name}`] });
    // api: the operations, the record and the idempotency claim (PutItem), GET and waits (GetItem),
    // aborts (UpdateItem), the listing (its index, then the page's records in one batch), and the
    // group's supervisor (its generation record).
    this.api.addToRolePolicy(item('dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:BatchGetItem'));
    this.api.addToRolePolicy(index('byCreated', 'dynamodb:Query'));
    // reply: votes, decisions, acknowledgements, finishing.
    this.reply.addToRolePolicy(item('dynamodb:GetItem', 'dynamodb:UpdateItem'));
    // supervise: its group's members (the open index), their records, decisions, in-doubt marks,
    // parking, and the group's generation record when it continues as a new execution.
    this.supervise.addToRolePolicy(item('dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:UpdateItem', 'dynamodb:PutItem'));
    this.supervise.addToRolePolicy(index('open', 'dynamodb:Query'));

    // Locks: whole-item conditional Puts on lock items, UpdateItem on release indexes. api takes the
    // locks a request declares and serves /locks and /deadlocks; whoever finishes a transaction
    // (reply, supervise) releases them; a long wait runs on-demand detection (the waiting index).
    const lockArn = lockTable.tableArn;
    const lockItems = new iam.PolicyStatement({ actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'], resources: [lockArn] });
    for (const fn of [this.api, this.reply, this.supervise]) fn.addToRolePolicy(lockItems);
    this.api.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:Query'], resources: [`${lockArn}/index/waiting`, `${lockArn}/index/deadlocks`] }));

    // Whoever decides sends phase two: api (PREPARE, and an abort's ABORTs), reply, supervise.
    const send = new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: Object.values(participantQueues).map((q) => q.queueArn) });
    for (const fn of [this.api, this.reply, this.supervise]) fn.addToRolePolicy(send);
    // supervise puts a copy of a message nobody acknowledges in the participant's DLQ (in doubt).
    if (deadLetterQueues.length > 0) {
      this.supervise.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: deadLetterQueues.map(([, q]) => q.queueArn) }));
    }
    // reply dead-letters a refused reply (naming someone other than its queue's owner) with the reason.
    this.reply.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [replyDeadLetterQueue.queueArn] }));

    // One event source mapping per reply queue; each also grants the function what it needs to consume it.
    // Their maxConcurrency adds up to no more than the reply function's reserved concurrency: a mapping
    // that outruns it is throttled, and a throttled batch goes back to its queue, counting towards the DLQ.
    const maxConcurrency = replyQueueConcurrency(config.replyConcurrency, Object.keys(replyQueues).length);
    for (const queue of Object.values(replyQueues)) {
      this.reply.addEventSource(new SqsEventSource(queue, { batchSize: 10, maxBatchingWindow: Duration.seconds(0), reportBatchItemFailures: true, maxConcurrency }));
    }
  }
}

/** Each reply queue's share of the reply function's concurrency: SQS mappings take 2 to 1,000. */
export function replyQueueConcurrency(replyConcurrency: number, queues: number): number {
  return Math.min(1000, Math.max(2, Math.floor(replyConcurrency / Math.max(1, queues))));
}

export interface HandlerOptions {
  /** Default 30 days. */
  logRetentionDays?: number;
  /** Default 10 s. */
  timeout?: Duration;
  /** Reserved concurrency: both a budget and a cap. Default none. */
  reservedConcurrency?: number;
  /** X-Ray active tracing; default true. */
  tracing?: boolean;
  /** Lambda's retries of an asynchronous invocation that failed (0 to 2); default Lambda's 2. */
  retryAttempts?: number;
}

function handler(
  scope: Construct,
  name: string,
  environment: Record<string, string>,
  options: HandlerOptions = {},
): nodejs.NodejsFunction {
  const entry = `lambdas/${name}.ts`;
  const logGroup = new logs.LogGroup(scope, `${name}-logs`, {
    retention: options.logRetentionDays ?? logs.RetentionDays.ONE_MONTH,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  // A role of its own instead of the AWS-managed basic execution policy, which may write to any
  // log group in the account: this one writes to its function's group only. Data access is
  // added per function, action by action.
  const role = new iam.Role(scope, `${name}-role`, {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `DTC ${name} function`,
  });
  logGroup.grantWrite(role);
  const fn = new nodejs.NodejsFunction(scope, name, {
    entry: join(REPO_ROOT, entry),
    handler: 'handler',
    projectRoot: REPO_ROOT,
    depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
    runtime: lambda.Runtime.NODEJS_24_X,
    architecture: lambda.Architecture.ARM_64,
    // Lambda allots CPU in proportion to memory. The coordinator's calls sit on every transaction's
    // critical path and are short, so 512 MB buys faster cold starts (SDK init) and lower latency
    // for a few cents per million calls; they use far less memory than that.
    memorySize: 512,
    timeout: options.timeout ?? Duration.seconds(10),
    ...(options.reservedConcurrency === undefined ? {} : { reservedConcurrentExecutions: options.reservedConcurrency }),
    ...(options.retryAttempts === undefined ? {} : { retryAttempts: options.retryAttempts }),
    environment,
    role,
    logGroup,
    tracing: options.tracing === false ? lambda.Tracing.DISABLED : lambda.Tracing.ACTIVE,
    bundling: {
      forceDockerBundling: false,
      format: nodejs.OutputFormat.ESM,
      // ESM-first packages (zod, Powertools) tree-shake better from their `module` builds.
      mainFields: ['module', 'main'],
      // Bundled CommonJS dependencies call require() for Node built-ins; ESM output has none.
      banner: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
      // Bundle the SDK at the versions package.json pins, not whatever the runtime carries.
      bundleAwsSDK: true,
      minify: true,
      sourceMap: true,
      sourcesContent: false,
    },
  });
  const cfn = fn.node.defaultChild as lambda.CfnFunction;
  // The embedded local stack runs the handler in process from its TypeScript source.
  cfn.addMetadata('dtc:entry', entry);
  cfn.addMetadata('dtc:handler', 'handler');
  if (options.tracing !== false) {
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions; Lambda active tracing needs them on *.',
    });
  }
  return fn;
}
