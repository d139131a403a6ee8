// The embedded local stack: AWS on loopback, built from real parts and provisioned from the
// synthesized CDK app, so what runs here is what `cdk deploy` creates.
import './polyfills';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import { buildApp, loadCdkContext } from '../../cdk/build';
import { LocalApiGateway } from './apigateway';
import { LOCAL_ACCOUNT, LOCAL_REGION, useLocalAws } from './aws-env';
import { startDynamo, type LocalDynamo } from './dynamodb';
import { LocalEvents, streamEvents } from './events';
import { LocalLambda } from './lambda';
import { Meter } from './meter';
import { provision, type StackTemplate } from './provision';
import { startSqs } from './sqs';
import { LocalStepFunctions } from './stepfunctions';
import type { CfnTemplate } from './template';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface LocalStackOptions {
  /** Data directory; DynamoDB keeps its data under it. Omit to keep everything in memory (tests). */
  home?: string;
  /** Templates synthesized earlier (by `synthesize`) with the same context: skips the synth (seconds) on a restart. */
  templates?: StackTemplate[];
  /** Port of the API; 0 picks a free one. */
  port?: number;
  /** CDK context overrides (participants, timeouts...), on top of cdk.json's context. */
  context?: Record<string, unknown>;
}

export interface LocalStackOutputs {
  apiUrl: string;
  endpoints: { dynamodb: string; sqs: string; stepfunctions: string; events?: string };
  stacks: Record<string, Record<string, string>>;
  tables: string[];
  queues: Record<string, string>;
  /** Participant service -> its request queue URL (from PARTICIPANT_QUEUES). */
  participantQueues: Record<string, string>;
  /** Participant service -> its reply queue URL (the stack output ReplyQueueUrls). */
  replyQueueUrls: Record<string, string>;
  txTable: string;
  /** The lock table (LOCK_TABLE). */
  lockTable: string;
  stateMachineArn: string;
}

export interface LocalStack {
  outputs: LocalStackOutputs;
  api: LocalApiGateway;
  stepFunctions: LocalStepFunctions;
  lambda: LocalLambda;
  dynamodb: DynamoDBClient;
  sqs: SQSClient;
  /** EventBridge PutEvents on loopback: the events the app published, kept and streamed. */
  events: LocalEvents;
  /**
   * What the stack serves, as AWS bills it: requests by service, operation and resource; DynamoDB
   * request units by table, index and key; Lambda invocations, durations and logs; API requests.
   */
  meter: Meter;
  /** Tell `listener` when a write sets an attribute of an item to a watched value (see LocalDynamo.watch). */
  watchItems: LocalDynamo['watch'];
  stop(): Promise<void>;
}

/** Synthesize the CDK app in process (no bundling: handlers run from source here). */
export function synthesize(context?: Record<string, unknown>): StackTemplate[] {
  const { app } = buildApp({ bundle: false, context: loadCdkContext(context ?? {}), outdir: undefined });
  const assembly = app.synth();
  const ordered: StackTemplate[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const stack = assembly.getStackByName(name);
    for (const dep of stack.dependencies) if ('stackName' in dep) visit((dep as { stackName: string }).stackName);
    ordered.push({ stackName: stack.stackName, template: stack.template as CfnTemplate });
  };
  for (const s of assembly.stacks) visit(s.stackName);
  return ordered;
}

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const stoppers: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stoppers.reverse()) await s().catch((err: unknown) => console.error(`[local] stop: ${(err as Error).message}`));
  };
  try {
    if (options.home) await mkdir(options.home, { recursive: true });
    const meter = new Meter();
    const dynamo = await startDynamo({ meter, ...(options.home ? { path: path.join(options.home, 'dynamodb') } : {}) });
    stoppers.push(dynamo.stop);
    const sqsServer = await startSqs({ meter });
    stoppers.push(sqsServer.stop);
    const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
    const dynamodb = new DynamoDBClient({ endpoint: dynamo.endpoint, region: LOCAL_REGION, credentials });
    const sqs = new SQSClient({ endpoint: sqsServer.endpoint, region: LOCAL_REGION, credentials });
    const lambda = new LocalLambda(REPO_ROOT, { meter });
    const stepFunctions = new LocalStepFunctions({
      invokeLambda: (fn, payload) => lambda.invoke(fn, payload),
      dynamodb,
      region: LOCAL_REGION,
      accountId: LOCAL_ACCOUNT,
    });
    const { endpoint: sfnEndpoint } = await stepFunctions.listen({});
    stoppers.push(() => stepFunctions.close());
    const events = new LocalEvents({ region: LOCAL_REGION, accountId: LOCAL_ACCOUNT, meter });
    const eventsEndpoint = await events.listen();
    stoppers.push(() => events.stop());
    const endpoints = { dynamodb: dynamo.endpoint, sqs: sqsServer.endpoint, stepfunctions: sfnEndpoint, events: eventsEndpoint };
    useLocalAws(endpoints);

    const api = new LocalApiGateway({ meter });
    const result = await provision(options.templates ?? synthesize(options.context), {
      region: LOCAL_REGION,
      accountId: LOCAL_ACCOUNT,
      dynamodb,
      sqs,
      lambda,
      api,
      createStateMachine: (name, definition) => stepFunctions.createStateMachine(name, definition),
      addEventBus: (name) => events.addBus(name),
    });
    await lambda.load();
    result.startMappings();
    stoppers.push(() => lambda.stop());
    // The events the app published, as Server-Sent Events (a local addition: not a route of the app).
    api.addHandler({
      prefix: '/events',
      serve: async (req, res, pathname) => {
        if (req.method === 'GET' && pathname === '/events') return streamEvents(req, res, events);
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'Not found' }));
      },
    });
    const apiUrl = await api.listen(options.port ?? 0);
    stoppers.push(() => api.stop());

    const env = result.environment;
    const outputs: LocalStackOutputs = {
      apiUrl,
      endpoints,
      stacks: result.outputs,
      tables: result.tables,
      queues: result.queues,
      participantQueues: JSON.parse(env.PARTICIPANT_QUEUES ?? '{}') as Record<string, string>,
      replyQueueUrls: replyQueueUrls(result.outputs),
      txTable: env.TX_TABLE ?? '',
      lockTable: env.LOCK_TABLE ?? '',
      stateMachineArn: env.STATE_MACHINE_ARN ?? result.stateMachines[0] ?? '',
    };
    return { outputs, api, stepFunctions, lambda, dynamodb, sqs, events, meter, watchItems: dynamo.watch, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The coordinator stack's ReplyQueueUrls output (JSON: service -> URL). */
function replyQueueUrls(outputs: Record<string, Record<string, string>>): Record<string, string> {
  for (const stack of Object.values(outputs)) if (stack.ReplyQueueUrls) return JSON.parse(stack.ReplyQueueUrls) as Record<string, string>;
  throw new Error('the synthesized app has no ReplyQueueUrls output');
}
