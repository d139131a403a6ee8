import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
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
  replyQueue: sqs.IQueue;
  /** Each with its dead-letter queue, where dispatch puts copies of messages left unacknowledged. */
  participantQueues: Readonly<Record<string, sqs.Queue>>;
}

/** The coordinator's three Lambda handlers (lambdas/*.ts), their logs, environment and data access. */
export class Functions extends Construct {
  readonly api: nodejs.NodejsFunction;
  readonly dispatch: nodejs.NodejsFunction;
  readonly reply: nodejs.NodejsFunction;
  /** Builds another coordinator function (lambdas/<name>.ts) with the same props and environment. */
  readonly addHandler: (scope: Construct, name: string) => nodejs.NodejsFunction;

  constructor(scope: Construct, id: string, props: FunctionsProps) {
    super(scope, id);
    const { config, txTable, lockTable, replyQueue, participantQueues } = props;
    const queueUrls = Object.fromEntries(Object.entries(participantQueues).map(([service, q]) => [service, q.queueUrl]));
    const deadLetterQueues = Object.entries(participantQueues).flatMap(([service, q]) => (q.deadLetterQueue ? [[service, q.deadLetterQueue.queue] as const] : []));
    const deadLetterUrls = Object.fromEntries(deadLetterQueues.map(([service, q]) => [service, q.queueUrl]));
    // Identical for every function: the embedded local stack runs all handlers in one process with
    // one merged environment. Only the api function adds STATE_MACHINE_ARN (see CoordinatorStack).
    const environment = {
      TX_TABLE: txTable.tableName,
      LOCK_TABLE: lockTable.tableName,
      REPLY_QUEUE_URL: replyQueue.queueUrl,
      PARTICIPANT_QUEUES: Stack.of(this).toJsonString(queueUrls),
      PARTICIPANT_DEAD_LETTER_QUEUES: Stack.of(this).toJsonString(deadLetterUrls),
      RETENTION_DAYS: String(config.retentionDays),
      DEFAULT_PREPARE_SECONDS: String(config.defaultPrepareSeconds),
      DEFAULT_COMMIT_SECONDS: String(config.defaultCommitSeconds),
      POWERTOOLS_SERVICE_NAME: METRICS_SERVICE,
      POWERTOOLS_LOG_LEVEL: config.logLevel,
      // The namespace the alarms and the dashboard read (cdk/observability.ts).
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      POWERTOOLS_TRACE_ENABLED: String(config.tracing),
      // Responses carry participants' operations and task tokens: keep them out of traces.
      POWERTOOLS_TRACER_CAPTURE_RESPONSE: 'false',
      // Read by the recovery sweeper (cdk/recovery.ts).
      RECOVERY_STALE_SECONDS: String(config.recoveryStaleSeconds),
    };
    const make = (name: string) => handler(this, name, environment, { logRetentionDays: config.logRetentionDays, tracing: config.tracing });
    this.addHandler = (scope, name) => handler(scope, name, environment, { logRetentionDays: config.logRetentionDays, tracing: config.tracing });
    this.api = make('api');
    this.dispatch = make('dispatch');
    this.reply = make('reply');

    const tableArn = txTable.tableArn;
    const item = (...actions: string[]) => new iam.PolicyStatement({ actions, resources: [tableArn] });
    // PutItem: the record and the idempotency claim; UpdateItem: the abort after a failed start;
    // Query: the listing, through its index only.
    this.api.addToRolePolicy(item('dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'));
    this.api.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:Query'], resources: [`${tableArn}/index/byCreated`] }));
    this.dispatch.addToRolePolicy(item('dynamodb:GetItem', 'dynamodb:UpdateItem'));
    this.reply.addToRolePolicy(item('dynamodb:GetItem', 'dynamodb:UpdateItem'));

    // Locks: whole-item conditional Puts on lock items, UpdateItem on release indexes. dispatch takes
    // and releases the locks a request declares, and runs on-demand detection when it waits long
    // (Query of the waiting index, Put of deadlock records); api serves /locks and /deadlocks.
    const lockArn = lockTable.tableArn;
    const lockItems = new iam.PolicyStatement({ actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'], resources: [lockArn] });
    this.dispatch.addToRolePolicy(lockItems);
    this.dispatch.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:Query'], resources: [`${lockArn}/index/waiting`] }));
    this.api.addToRolePolicy(lockItems);
    this.api.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:Query'], resources: [`${lockArn}/index/deadlocks`] }));

    // dispatch sends every phase's messages; reply re-sends ABORT to a YES vote that arrives late.
    const send = new iam.PolicyStatement({
      actions: ['sqs:SendMessage'],
      resources: Object.values(participantQueues).map((q) => q.queueArn),
    });
    this.dispatch.addToRolePolicy(send);
    this.reply.addToRolePolicy(send);
    // dispatch puts a copy of a message nobody acknowledges in the participant's DLQ (in doubt).
    if (deadLetterQueues.length > 0) {
      this.dispatch.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: deadLetterQueues.map(([, q]) => q.queueArn) }));
    }

    // Also grants the reply function what it needs to consume the queue.
    this.reply.addEventSource(
      new SqsEventSource(replyQueue, {
        batchSize: 10,
        maxBatchingWindow: Duration.seconds(0),
        reportBatchItemFailures: true,
      }),
    );
  }
}

export interface HandlerOptions {
  /** Default 30 days. */
  logRetentionDays?: number;
  /** X-Ray active tracing; default true. */
  tracing?: boolean;
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
    timeout: Duration.seconds(10),
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
