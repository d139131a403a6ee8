// The one test harness for local AWS. `startLocalAws` starts exactly the emulators a test asks for
// (dynalite, fauxqs, or the whole embedded stack) and creates the app's tables and queues from the
// synthesized CDK template through the embedded stack's own provisioner (src/local/provision.ts),
// so a test's log or lock table is the one `cdk deploy` creates: no test writes a table schema.
// Not a test file itself.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  type QueueAttributeName,
  ReceiveMessageCommand,
  SQSClient,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import { createTableAndWait } from '../../src/aws/tables';
import { type ReplyMessage, replyMessage } from '../../src/core/messages';
import { participantTableInput } from '../../src/demo/shop';
import { LOCAL_ACCOUNT, LOCAL_REGION } from '../../src/local/aws-env';
import { startDynamo } from '../../src/local/dynamodb';
import { provision, type ProvisionTargets, type StackTemplate } from '../../src/local/provision';
import { startSqs } from '../../src/local/sqs';
import type { LocalStack } from '../../src/local/stack';
import type { CfnResource } from '../../src/local/template';
import { referencedIds } from '../../src/local/template';

/** The app's tables a test can ask for, by the construct that defines them (cdk/log-table.ts, cdk/locks.ts). */
export type AppTable = 'log' | 'locks';
const TABLE_CONSTRUCTS: Record<AppTable, string> = { log: 'LogTable', locks: 'LocksTable' };

export interface LocalAwsOptions {
  /** dynalite; `{ path }` keeps its data on disk there. Implied by `tables`. */
  dynamodb?: boolean | { path: string };
  /** fauxqs. Implied by `queues`. */
  sqs?: boolean;
  /** The app's tables to create, as the template defines them. */
  tables?: readonly AppTable[];
  /** The app's queues to create (with their dead-letter queues), by QueueName: 'dtc-replies', ... */
  queues?: readonly string[];
  /** CDK context overrides for the template (participants, timeouts...). */
  context?: Record<string, unknown>;
}

export interface LocalAws {
  dynamodb: DynamoDBClient;
  sqs: SQSClient;
  /** Physical names of the tables asked for. */
  tables: Record<AppTable, string>;
  /** QueueName -> URL of the queues asked for (and their dead-letter queues). */
  queues: Record<string, string>;
  /** A participant's own table, as the product defines it (participantTableInput, src/demo/shop.ts). */
  participantTable(name: string): Promise<string>;
  /** A queue of the test's own (not the app's): a fresh one per test keeps tests apart. */
  scratchQueue(name: string, attributes?: Partial<Record<QueueAttributeName, string>>): Promise<string>;
  /** Sends `body` (JSON unless a string); answers the message id. */
  send(queueUrl: string, body: unknown): Promise<string>;
  /** Reads and deletes what the queue holds now (or waits up to `waitSeconds` for the first message). */
  drain(queueUrl: string, waitSeconds?: number): Promise<string[]>;
  replies(queueUrl: string, waitSeconds?: number): Promise<ReplyMessage[]>;
  /** Visible + in flight. */
  queueDepth(queueUrl: string): Promise<number>;
  /**
   * Every ReceiveMessage on `queueUrl` through this client from now on, so a test can wait for a
   * receive to have happened (a redelivery, a long poll in progress) instead of sleeping.
   */
  watchReceives(queueUrl: string): ReceiveLog;
  stop(): Promise<void>;
}

export interface Receive {
  startedAtMs: number;
  /** Undefined while the call is in flight. */
  endedAtMs?: number;
  messageIds: string[];
}

export interface ReceiveLog {
  receives: Receive[];
  /** How many receives returned `messageId`. */
  deliveries(messageId: string): number;
  stop(): void;
}

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Start the local AWS pieces a test needs. With `app`, the whole embedded stack (every resource
 * of the template, Lambdas, Step Functions and the API on loopback); otherwise only the emulators
 * asked for, with the template's tables and queues asked for.
 */
export async function startLocalAws(options: LocalAwsOptions & { app: true; port?: number }): Promise<LocalAws & { stack: LocalStack }>;
export async function startLocalAws(options: LocalAwsOptions): Promise<LocalAws>;
export async function startLocalAws(options: LocalAwsOptions & { app?: true; port?: number }): Promise<LocalAws & { stack?: LocalStack }> {
  if (options.app) {
    // Imported here: the stack (and the CDK library under it) take seconds to load, which a test
    // of the emulators alone, or a child process started many times, should not pay.
    const { startLocalStack } = await import('../../src/local/stack');
    const stack = await startLocalStack({ port: options.port ?? 0, templates: await appTemplates(options.context) });
    return { ...clientsHelpers(stack.dynamodb, stack.sqs, stack.stop), tables: { log: stack.outputs.txTable, locks: stack.outputs.lockTable }, queues: stack.outputs.queues, stack };
  }
  const stoppers: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stoppers.reverse()) await s();
  };
  try {
    const wantsDynamo = Boolean(options.dynamodb) || (options.tables?.length ?? 0) > 0;
    const wantsSqs = Boolean(options.sqs) || (options.queues?.length ?? 0) > 0;
    let dynamodb: DynamoDBClient | undefined;
    let sqs: SQSClient | undefined;
    if (wantsDynamo) {
      const dynamo = await startDynamo(typeof options.dynamodb === 'object' ? { path: options.dynamodb.path } : {});
      stoppers.push(dynamo.stop);
      dynamodb = new DynamoDBClient({ endpoint: dynamo.endpoint, region: LOCAL_REGION, credentials });
      stoppers.push(async () => dynamodb!.destroy());
    }
    if (wantsSqs) {
      const server = await startSqs();
      stoppers.push(server.stop);
      sqs = new SQSClient({ endpoint: server.endpoint, region: LOCAL_REGION, credentials });
      stoppers.push(async () => sqs!.destroy());
    }
    const helpers = clientsHelpers(missing(dynamodb, 'dynamodb'), missing(sqs, 'sqs'), stop);
    const tables = {} as Record<AppTable, string>;
    const queues: Record<string, string> = {};
    if (wantsDynamo || wantsSqs) {
      const wanted = appResources(await appTemplates(options.context), options.tables ?? [], options.queues ?? []);
      const result = await provision(wanted.stacks, emulatorsOnly(dynamodb, sqs));
      for (const [table, logicalId] of wanted.tables) tables[table] = result.tables.find((name) => name.endsWith(`-${logicalId}`))!;
      Object.assign(queues, result.queues);
    }
    return { ...helpers, tables, queues };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A client the test did not ask for: using it says which option to set. */
function missing<T extends object>(client: T | undefined, option: 'dynamodb' | 'sqs'): T {
  return (
    client ??
    (new Proxy({} as T, {
      get(_, prop) {
        if (prop === 'then') return undefined;
        throw new Error(`startLocalAws: pass { ${option}: true } to use ${option}`);
      },
    }) as T)
  );
}

/** Provisioning targets for tables and queues only: anything else in the selection is a harness bug. */
function emulatorsOnly(dynamodb: DynamoDBClient | undefined, sqs: SQSClient | undefined): ProvisionTargets {
  const unused = (what: string) =>
    new Proxy({}, {
      get() {
        throw new Error(`startLocalAws provisions tables and queues only, not ${what}`);
      },
    });
  return {
    region: LOCAL_REGION,
    accountId: LOCAL_ACCOUNT,
    dynamodb: missing(dynamodb, 'dynamodb'),
    sqs: missing(sqs, 'sqs'),
    lambda: unused('Lambda functions') as ProvisionTargets['lambda'],
    api: unused('APIs') as ProvisionTargets['api'],
    createStateMachine: () => {
      throw new Error('startLocalAws provisions tables and queues only, not state machines');
    },
  };
}

/**
 * The template's tables and queues that were asked for, and what they reference (a queue's
 * dead-letter queue), as templates of their own. Throws naming what the template lacks.
 */
function appResources(stacks: StackTemplate[], tables: readonly AppTable[], queueNames: readonly string[]) {
  const all = new Map<string, { stackName: string; res: CfnResource }>();
  for (const { stackName, template } of stacks) for (const [id, res] of Object.entries(template.Resources ?? {})) all.set(id, { stackName, res });
  const chosen = new Set<string>();
  const choose = (id: string) => {
    if (chosen.has(id) || !all.has(id)) return;
    chosen.add(id);
    for (const ref of referencedIds(all.get(id)!.res.Properties)) choose(ref);
  };
  const tableIds: [AppTable, string][] = tables.map((table) => {
    const id = [...all].find(([logicalId, { res }]) => res.Type === 'AWS::DynamoDB::Table' && logicalId.startsWith(TABLE_CONSTRUCTS[table]))?.[0];
    if (!id) throw new Error(`the CDK template has no ${table} table (construct ${TABLE_CONSTRUCTS[table]})`);
    return [table, id];
  });
  for (const [, id] of tableIds) choose(id);
  for (const name of queueNames) {
    const id = [...all].find(([, { res }]) => res.Type === 'AWS::SQS::Queue' && res.Properties?.QueueName === name)?.[0];
    if (!id) throw new Error(`the CDK template has no queue named ${name}`);
    choose(id);
  }
  const selected = stacks
    .map(({ stackName, template }) => ({
      stackName,
      template: { Resources: Object.fromEntries(Object.entries(template.Resources ?? {}).filter(([id]) => chosen.has(id))) },
    }))
    .filter((s) => Object.keys(s.template.Resources).length > 0);
  return { stacks: selected, tables: tableIds };
}

function clientsHelpers(dynamodb: DynamoDBClient, sqs: SQSClient, stop: () => Promise<void>): Omit<LocalAws, 'tables' | 'queues'> {
  const drain = async (QueueUrl: string, waitSeconds = 0): Promise<string[]> => {
    const bodies: string[] = [];
    for (let i = 0; i < 100; i++) {
      const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: i === 0 ? waitSeconds : 0 }));
      const messages = out.Messages ?? [];
      if (messages.length === 0) return bodies;
      for (const m of messages) {
        bodies.push(m.Body ?? '');
        await sqs.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle: m.ReceiptHandle }));
      }
    }
    return bodies;
  };
  return {
    dynamodb,
    sqs,
    async participantTable(name) {
      await createTableAndWait(dynamodb, participantTableInput(name));
      return name;
    },
    async scratchQueue(QueueName, Attributes) {
      const out = await sqs.send(new CreateQueueCommand({ QueueName, ...(Attributes ? { Attributes } : {}) }));
      return out.QueueUrl!;
    },
    async send(QueueUrl, body) {
      const out = await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: typeof body === 'string' ? body : JSON.stringify(body) }));
      return out.MessageId!;
    },
    drain,
    async replies(queueUrl, waitSeconds = 0) {
      return (await drain(queueUrl, waitSeconds)).map((b) => replyMessage.parse(JSON.parse(b)));
    },
    async queueDepth(QueueUrl) {
      const out = await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
      );
      return Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) + Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
    },
    watchReceives(queueUrl) {
      const receives: Receive[] = [];
      const name = `watchReceives-${++watchers}`;
      sqs.middlewareStack.add(
        (next, context) => async (args) => {
          const input = args.input as { QueueUrl?: string };
          if (context.commandName !== 'ReceiveMessageCommand' || input.QueueUrl !== queueUrl) return next(args);
          const receive: Receive = { startedAtMs: Date.now(), messageIds: [] };
          receives.push(receive);
          try {
            const result = await next(args);
            const output = result.output as { Messages?: { MessageId?: string }[] };
            receive.messageIds = (output.Messages ?? []).map((m) => m.MessageId ?? '');
            return result;
          } finally {
            receive.endedAtMs = Date.now();
          }
        },
        { step: 'initialize', name },
      );
      return {
        receives,
        deliveries: (messageId) => receives.filter((r) => r.messageIds.includes(messageId)).length,
        stop: () => void sqs.middlewareStack.remove(name),
      };
    },
    stop,
  };
}

let watchers = 0;

/**
 * The synthesized app (`synthesize`, src/local/stack.ts) for `context`, cached on disk: a synth
 * takes seconds and every test file that provisions needs one. The cache key covers what the
 * template is built from (cdk/, cdk.json, src/, the CDK library's version) and the context.
 */
export async function appTemplates(context: Record<string, unknown> = {}): Promise<StackTemplate[]> {
  const file = path.join(tmpdir(), 'dtc-test-templates', `${templateKey(context)}.json`);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as StackTemplate[];
  } catch {
    // Not cached yet (or a half-written file from a killed run): synthesize.
  }
  const { synthesize } = await import('../../src/local/stack');
  const stacks = synthesize(context);
  mkdirSync(path.dirname(file), { recursive: true });
  // Write then rename, so a test file running in parallel never reads half a template.
  const partial = `${file}.${process.pid}.tmp`;
  writeFileSync(partial, JSON.stringify(stacks));
  renameSync(partial, file);
  return stacks;
}

function templateKey(context: Record<string, unknown>): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify(context));
  hash.update(readFileSync(path.join(REPO_ROOT, 'node_modules/aws-cdk-lib/package.json')));
  hash.update(readFileSync(path.join(REPO_ROOT, 'cdk.json')));
  for (const dir of ['cdk', 'src']) {
    for (const entry of readdirSync(path.join(REPO_ROOT, dir), { recursive: true, withFileTypes: true }).sort((a, b) => (a.parentPath + a.name).localeCompare(b.parentPath + b.name))) {
      if (!entry.isFile()) continue;
      const file = path.join(entry.parentPath, entry.name);
      hash.update(file);
      hash.update(readFileSync(file));
    }
  }
  return hash.digest('hex').slice(0, 24);
}
