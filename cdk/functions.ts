import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { DtcConfig } from './build';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface FunctionsProps {
  config: DtcConfig;
  txTable: dynamodb.ITable;
  replyQueue: sqs.IQueue;
  participantQueues: Readonly<Record<string, sqs.IQueue>>;
}

/** The coordinator's three Lambda handlers (lambdas/*.ts), their logs, environment and data access. */
export class Functions extends Construct {
  readonly api: nodejs.NodejsFunction;
  readonly dispatch: nodejs.NodejsFunction;
  readonly reply: nodejs.NodejsFunction;

  constructor(scope: Construct, id: string, props: FunctionsProps) {
    super(scope, id);
    const { config, txTable, replyQueue, participantQueues } = props;
    const queueUrls = Object.fromEntries(Object.entries(participantQueues).map(([service, q]) => [service, q.queueUrl]));
    // Identical for every function: the embedded local stack runs all handlers in one process with
    // one merged environment. Only the api function adds STATE_MACHINE_ARN (see CoordinatorStack).
    const environment = {
      TX_TABLE: txTable.tableName,
      REPLY_QUEUE_URL: replyQueue.queueUrl,
      PARTICIPANT_QUEUES: Stack.of(this).toJsonString(queueUrls),
      RETENTION_DAYS: String(config.retentionDays),
      DEFAULT_PREPARE_SECONDS: String(config.defaultPrepareSeconds),
      DEFAULT_COMMIT_SECONDS: String(config.defaultCommitSeconds),
      POWERTOOLS_SERVICE_NAME: 'dtc',
      POWERTOOLS_LOG_LEVEL: config.logLevel,
    };
    const make = (name: string) => handler(this, name, environment);
    this.api = make('api');
    this.dispatch = make('dispatch');
    this.reply = make('reply');

    const tableArn = txTable.tableArn;
    const item = (...actions: string[]) => new iam.PolicyStatement({ actions, resources: [tableArn] });
    this.api.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Query'],
        resources: [tableArn, `${tableArn}/index/*`],
      }),
    );
    this.dispatch.addToRolePolicy(item('dynamodb:GetItem', 'dynamodb:UpdateItem'));
    this.reply.addToRolePolicy(item('dynamodb:GetItem', 'dynamodb:UpdateItem'));

    // dispatch sends every phase's messages; reply re-sends ABORT to a YES vote that arrives late.
    const send = new iam.PolicyStatement({
      actions: ['sqs:SendMessage'],
      resources: Object.values(participantQueues).map((q) => q.queueArn),
    });
    this.dispatch.addToRolePolicy(send);
    this.reply.addToRolePolicy(send);

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

function handler(scope: Construct, name: string, environment: Record<string, string>): nodejs.NodejsFunction {
  const entry = `lambdas/${name}.ts`;
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
    logGroup: new logs.LogGroup(scope, `${name}-logs`, {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    }),
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
  return fn;
}
