// Where the end-to-end suite runs, chosen by the environment (see README, "Deploy and test targets"):
//   DTC_TARGET=embedded (default)  the embedded local stack, in this process (harness.ts)
//   DTC_TARGET=localstack          a LocalStack deployment (npm run localstack:deploy): endpoint
//                                  LOCALSTACK_ENDPOINT (default http://localhost.localstack.cloud:4566),
//                                  outputs DTC_OUTPUTS (default localstack/cdk-outputs.json)
//   DTC_TARGET=outputs             a real deployment: DTC_OUTPUTS=cdk-outputs.json from
//                                  `cdk deploy --outputs-file`; API calls are SigV4-signed with the
//                                  default AWS credential chain
// On the last two the demo shop still runs here: its consumers read the target's queues and its
// tables are created on the target (a unique prefix per run, deleted at stop). Embedded-only hooks
// (h.stack.stepFunctions, h.stack.lambda, ...) throw there; waitForEnd polls the API instead.
// Not a test file itself.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DeleteTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { TxView } from '../../src/core/transaction';
import { LocalApiGateway } from '../../src/local/apigateway';
import { startDemo, type DemoLockOptions } from '../../src/local/demo-routes';
import { signedHeaders, type Credentials } from '../../src/local/sigv4';
import type { LocalStack, LocalStackOutputs } from '../../src/local/stack';
import { readDeployedOutputs } from '../../localstack/outputs';
import { orderBody, type Harness } from './harness';
import { pollUntilEnded, queueDepths, waitForQuietQueues } from './polling';

export type Target =
  | { kind: 'embedded' }
  | { kind: 'localstack'; endpoint: string; outputsFile: string }
  | { kind: 'outputs'; outputsFile: string };

export const DEFAULT_LOCALSTACK_ENDPOINT = 'http://localhost.localstack.cloud:4566';
export const LOCALSTACK_OUTPUTS_FILE = 'localstack/cdk-outputs.json';
/** LocalStack accepts any credentials unless IAM enforcement is on; these are its documented defaults. */
export const LOCALSTACK_CREDENTIALS: Credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
export const LOCALSTACK_REGION = 'us-east-1';

const REPO_ROOT = path.resolve(new URL('../..', import.meta.url).pathname);

export function targetFromEnv(env: NodeJS.ProcessEnv): Target {
  const kind = env.DTC_TARGET ?? 'embedded';
  switch (kind) {
    case 'embedded':
      return { kind };
    case 'localstack':
      return {
        kind,
        endpoint: (env.LOCALSTACK_ENDPOINT ?? DEFAULT_LOCALSTACK_ENDPOINT).replace(/\/+$/, ''),
        outputsFile: path.resolve(REPO_ROOT, env.DTC_OUTPUTS ?? LOCALSTACK_OUTPUTS_FILE),
      };
    case 'outputs':
      if (!env.DTC_OUTPUTS) throw new Error('DTC_TARGET=outputs needs DTC_OUTPUTS, the file `cdk deploy --outputs-file` wrote');
      return { kind, outputsFile: path.resolve(REPO_ROOT, env.DTC_OUTPUTS) };
    default:
      throw new Error(`DTC_TARGET must be embedded, localstack or outputs, got '${kind}'`);
  }
}

/**
 * Where to send API requests. LocalStack serves a REST API under `/_aws/execute-api/<id>/<stage>`
 * on its one endpoint, which works whatever host the deployed URL names; AWS at the URL itself.
 */
export function apiBaseUrl(target: Exclude<Target, { kind: 'embedded' }>, apiUrl: string): string {
  const url = new URL(apiUrl);
  if (target.kind === 'outputs') return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
  const apiId = url.hostname.split('.')[0];
  const stage = url.pathname.split('/').filter(Boolean)[0];
  if (!apiId || !stage) throw new Error(`cannot read the API id and stage from ${apiUrl}`);
  return `${target.endpoint}/_aws/execute-api/${apiId}/${stage}`;
}

/** The region of a deployed API, from its URL (`<id>.execute-api.<region>.amazonaws.com`). */
export function regionOfApiUrl(apiUrl: string): string | undefined {
  return /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com/.exec(new URL(apiUrl).hostname)?.[1];
}

async function credentialsFor(target: Exclude<Target, { kind: 'embedded' }>): Promise<Credentials> {
  if (target.kind === 'localstack') return LOCALSTACK_CREDENTIALS;
  const { defaultProvider } = await import('@aws-sdk/credential-provider-node');
  return defaultProvider()();
}

export interface RemoteHarnessOptions {
  context?: Record<string, unknown>;
  locks?: DemoLockOptions;
}

export async function startRemoteHarness(target: Exclude<Target, { kind: 'embedded' }>, options: RemoteHarnessOptions = {}): Promise<Harness> {
  const deployed = readDeployedOutputs(JSON.parse(readFileSync(target.outputsFile, 'utf8')) as unknown, target.outputsFile);
  const wanted = (options.context?.participants as string[] | undefined) ?? [];
  const missing = wanted.filter((p) => !(p in deployed.participantQueues));
  if (missing.length > 0) {
    throw new Error(
      `the ${target.kind} deployment has no queue for ${missing.join(', ')}: deploy with -c participants=${wanted.join(',')} ` +
        `(npm run test:localstack deploys the e2e suite's set)`,
    );
  }
  const region = target.kind === 'localstack' ? LOCALSTACK_REGION : (regionOfApiUrl(deployed.apiUrl) ?? process.env.AWS_REGION);
  if (!region) throw new Error(`cannot tell the region of ${deployed.apiUrl}; set AWS_REGION`);
  const clientConfig =
    target.kind === 'localstack' ? { endpoint: target.endpoint, region, credentials: LOCALSTACK_CREDENTIALS } : { region };
  const dynamodb = new DynamoDBClient(clientConfig);
  const sqs = new SQSClient(clientConfig);
  const credentials = await credentialsFor(target);
  const apiBase = apiBaseUrl(target, deployed.apiUrl);
  const queueName = (url: string) => url.split('/').pop() ?? url;
  const queues = Object.fromEntries(
    [...Object.values(deployed.participantQueues), ...Object.values(deployed.replyQueueUrls)].map((url) => [queueName(url), url]),
  );

  // The demo's read-only views (`/demo/...`) are served from this process, as on the embedded stack.
  const demoApi = new LocalApiGateway({ auth: false });
  const demoUrl = await demoApi.listen(0);
  const outputs: LocalStackOutputs = {
    apiUrl: apiBase,
    endpoints: target.kind === 'localstack' ? { dynamodb: target.endpoint, sqs: target.endpoint, stepfunctions: target.endpoint } : { dynamodb: '', sqs: '', stepfunctions: '' },
    stacks: deployed.stacks,
    tables: [deployed.txTable, ...(deployed.lockTable ? [deployed.lockTable] : [])],
    queues,
    participantQueues: deployed.participantQueues,
    replyQueueUrls: deployed.replyQueueUrls,
    txTable: deployed.txTable,
    lockTable: deployed.lockTable ?? '',
    stateMachineArn: deployed.stateMachineArn,
  };
  const stack = embeddedOnly(target.kind, {
    outputs,
    api: demoApi,
    dynamodb,
    sqs,
    stop: async () => {
      await demoApi.stop();
      dynamodb.destroy();
      sqs.destroy();
    },
  });
  // A fresh set of demo tables per run: the tests expect seed values, and a shared deployment
  // may hold earlier runs' tables.
  const prefix = `e2e-${randomUUID().slice(0, 8)}-`;
  const demo = await startDemo(stack, { prefix, ...(options.locks ? { locks: options.locks } : {}) });

  const request: Harness['request'] = async (method, urlPath, body, headers = {}) => {
    const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const base = { 'content-type': 'application/json', ...headers };
    const url = new URL(`${urlPath.startsWith('/demo/') ? demoUrl : apiBase}${urlPath}`);
    const sent = urlPath.startsWith('/demo/')
      ? base
      : await signedHeaders({ method, url, headers: base, ...(text === undefined ? {} : { body: text }) }, credentials, region);
    const res = await fetch(url, { method, headers: sent, ...(text === undefined ? {} : { body: text }) });
    const answer = await res.text();
    let parsed: unknown;
    try {
      parsed = answer ? JSON.parse(answer) : undefined;
    } catch {
      parsed = answer;
    }
    return { status: res.status, body: parsed, headers: Object.fromEntries(res.headers) };
  };
  const depths = () => queueDepths(sqs, queues);
  return {
    stack,
    demo,
    apiUrl: apiBase,
    request,
    async startOrder(spec, timeouts) {
      const res = await request('POST', '/transactions', orderBody(spec, timeouts).body);
      if (res.status !== 202) throw new Error(`POST /transactions answered ${res.status}: ${JSON.stringify(res.body)}`);
      return res.body.txId as string;
    },
    // No execution-end hook off the embedded stack: poll the API, at a pace a deployment's
    // throttle and a LocalStack container both take.
    async waitForEnd(txId, timeoutMs = 60_000) {
      const startedAt = Date.now();
      return pollUntilEnded(request, txId, timeoutMs, 500, startedAt);
    },
    queueDepths: depths,
    async waitForQuiet(timeoutMs = 30_000, ignore = /silent/) {
      await waitForQuietQueues(depths, timeoutMs, ignore, 500);
    },
    async sendRaw(QueueUrl, body) {
      await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: JSON.stringify(body) }));
    },
    async stop() {
      await demo.stop();
      await Promise.all(
        Object.values(demo.tables).map((TableName) =>
          dynamodb.send(new DeleteTableCommand({ TableName })).catch((err: unknown) => console.warn(`[e2e] could not delete ${TableName}: ${(err as Error).message}`)),
        ),
      );
      await stack.stop();
    },
  };
}

/** A LocalStack-shaped object whose embedded-only members throw with a message naming the target. */
function embeddedOnly(kind: string, present: Pick<LocalStack, 'outputs' | 'api' | 'dynamodb' | 'sqs' | 'stop'>): LocalStack {
  return new Proxy(present, {
    get(target, prop, receiver) {
      if (typeof prop === 'symbol' || prop in target) return Reflect.get(target, prop, receiver);
      if (prop === 'then' || prop === 'toJSON') return undefined;
      throw new Error(`h.stack.${prop} exists on the embedded target only (DTC_TARGET=${kind}): poll the API or the target instead`);
    },
  }) as unknown as LocalStack;
}
