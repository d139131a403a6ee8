// Fault injection for the embedded stack and the demo services, for chaos runs and for trying the
// failure paths by hand. Faults are SDK middleware installed on every DynamoDB, SQS and Step
// Functions client in this process (the in-process Lambda handlers' clients included, which this
// code never constructs), plus a wrapper that crashes a participant's handlers around their effect.
//
//   DTC_FAULTS='{"seed":1,"sqs.drop":0.05,"sqs.duplicate":0.05,"dynamodb.throttle":0.02}' npm start
//
// Kinds, each a probability per call (per message for the sqs.* message faults):
//   dynamodb.fail | sqs.fail | sfn.fail          the call fails at once with a 5xx (what an outage
//                                                 past the SDK's retries looks like to the caller)
//   dynamodb.throttle | sqs.throttle | sfn.throttle   one attempt is throttled; the SDK retries it
//   dynamodb.transactionConflict   a TransactWriteItems or TransactGetItems is canceled with
//                  TransactionConflict on one of its items, as a concurrent transaction on that item
//                  causes (the SDK does not retry it; nothing is written)
//   sqs.drop       SendMessage reports success and sends nothing (a lost message)
//   sqs.duplicate  the message is sent twice
//   sqs.delay      the message becomes visible 1..sqs.delayMaxSeconds s later (later ones overtake
//                  it: this is how messages are reordered)
//   participant.crashBefore   a demo service's prepare/commit/abort throws before it runs
//   participant.crashAfter    the run crashes right after its effect was written with the barrier,
//                  before it replies (a crash there: the message is redelivered)
//   participant.pause   a prepare run freezes just before it writes its effect, for 1..
//                  participant.pauseMaxMs ms (a GC pause, a frozen container): its heartbeat stops
//                  too, so a duplicate may take the claim over after the lease, or the ABORT come;
//                  then it resumes and tries to write (the barrier must refuse it)
// Killing the coordinator is a process kill: see src/local/process.ts and test/chaos.
import { createHash } from 'node:crypto';
import { DynamoDBClient, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { z } from 'zod';
import { createRandom, type Random } from '../core/random';
import type { Participant } from '../participant/define';
import type { BarrierStorePort } from '../core/ports';
import { systemSleep } from '../aws/system';

const rate = z.number().min(0).max(1);

export const faultConfigSchema = z.strictObject({
  seed: z.number().int().default(1),
  'dynamodb.fail': rate.default(0),
  'dynamodb.throttle': rate.default(0),
  'dynamodb.transactionConflict': rate.default(0),
  'sqs.fail': rate.default(0),
  'sqs.throttle': rate.default(0),
  'sqs.drop': rate.default(0),
  'sqs.duplicate': rate.default(0),
  'sqs.delay': rate.default(0),
  'sqs.delayMaxSeconds': z.number().int().min(1).max(900).default(5),
  'sfn.fail': rate.default(0),
  'sfn.throttle': rate.default(0),
  'participant.crashBefore': rate.default(0),
  'participant.crashAfter': rate.default(0),
  'participant.pause': rate.default(0),
  'participant.pauseMaxMs': z.number().int().min(1).max(600_000).default(10_000),
});
export type FaultConfig = z.infer<typeof faultConfigSchema>;
export type FaultInput = z.input<typeof faultConfigSchema>;
/** The settings of the config that are not fault rates. */
const SETTINGS = ['seed', 'sqs.delayMaxSeconds', 'participant.pauseMaxMs'] as const;
export type FaultKind = Exclude<keyof FaultConfig, (typeof SETTINGS)[number]>;
/** Not faults but what they led to: paused runs whose write the barrier refused on resuming. */
export const PAUSE_REFUSED = 'participant.pauseRefused';

export function parseFaults(json: string): FaultConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new Error(`DTC_FAULTS is not JSON: ${json}`);
  }
  const parsed = faultConfigSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`DTC_FAULTS is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** A crash injected into a participant's handler. */
export class InjectedCrash extends Error {
  override name = 'InjectedCrash';
}

export interface FaultInjector {
  readonly config: FaultConfig;
  /** Faults are injected only while enabled (start the stack first, then enable). */
  enabled: boolean;
  /** How many of each kind were injected so far, and PAUSE_REFUSED. */
  stats(): Record<FaultKind | typeof PAUSE_REFUSED, number>;
  /** The demo services' handlers, crashing before they run at the configured rate. */
  wrapParticipant(participant: Participant): Participant;
  /** A demo service's barrier store: crashes after an effect was written, and paused prepare runs. */
  wrapBarrierStore<W>(store: BarrierStorePort<W>): BarrierStorePort<W>;
}

type Service = 'dynamodb' | 'sqs' | 'sfn';

let active: FaultInjector | undefined;
const installedStacks = new WeakSet<object>();

/**
 * Install the faults process-wide (once: a second call replaces the configuration). Clients built
 * before or after this get the middleware on their first call.
 */
export function installFaults(input: FaultInput): FaultInjector {
  const config = faultConfigSchema.parse(input);
  const random = createRandom(config.seed);
  const counts = Object.fromEntries(
    (Object.keys(config) as (keyof FaultConfig)[]).filter((k) => !(SETTINGS as readonly string[]).includes(k)).map((k) => [k, 0]),
  ) as Record<FaultKind, number>;
  let pauseRefused = 0;
  const injector: FaultInjector & { roll(kind: FaultKind): boolean; random: Random } = {
    config,
    enabled: false,
    random,
    stats: () => ({ ...counts, [PAUSE_REFUSED]: pauseRefused }),
    roll(kind) {
      if (!injector.enabled || !random.chance(config[kind])) return false;
      counts[kind]++;
      return true;
    },
    wrapParticipant(participant) {
      const guard =
        <I, O>(name: string, fn: (input: I) => Promise<O>) =>
        async (input: I): Promise<O> => {
          if (injector.roll('participant.crashBefore')) throw new InjectedCrash(`${participant.service}.${name} crashed before it ran`);
          return fn(input);
        };
      return {
        ...participant,
        service: participant.service,
        prepare: guard('prepare', (input) => participant.prepare(input)),
        commit: guard('commit', (input) => participant.commit(input)),
        abort: guard('abort', (input) => participant.abort(input)),
      };
    },
    wrapBarrierStore<W>(store: BarrierStorePort<W>): BarrierStorePort<W> {
      // The run that last claimed each barrier through this store, and the runs frozen now.
      const claimant = new Map<string, string>();
      const frozen = new Map<string, Promise<void>>();
      return {
        read: (txId) => store.read(txId),
        scanUnsettled: (maxPages) => store.scanUnsettled(maxPages),
        async write(txId, expectedRev, next, nowMs, writes = []) {
          // A frozen run's heartbeat renews nothing until the run resumes.
          if (next.state === 'PREPARING') await frozen.get(next.claim.runId);
          const pausing = next.state === 'PREPARED' && writes.length > 0 && injector.roll('participant.pause');
          if (pausing) {
            const runId = claimant.get(txId) ?? '';
            const resumes = systemSleep(random.int(1, config['participant.pauseMaxMs']));
            frozen.set(runId, resumes);
            await resumes;
            frozen.delete(runId);
          }
          const result = await store.write(txId, expectedRev, next, nowMs, writes);
          if (pausing && result.kind !== 'written') pauseRefused++;
          if (result.kind === 'written') {
            if (next.state === 'PREPARING') claimant.set(txId, next.claim.runId);
            else claimant.delete(txId);
          }
          if (result.kind === 'written' && writes.length > 0 && injector.roll('participant.crashAfter')) {
            throw new InjectedCrash(`a run crashed after writing ${next.state} of ${txId} with its effect`);
          }
          return result;
        },
      };
    },
  };
  active = injector;
  patchClients();
  return injector;
}

export function activeFaults(): FaultInjector | undefined {
  return active;
}

/** Faults from DTC_FAULTS, installed (disabled until the caller enables them); undefined if unset. */
export function installFaultsFromEnv(env: NodeJS.ProcessEnv = process.env): FaultInjector | undefined {
  const json = env.DTC_FAULTS;
  if (!json) return undefined;
  return installFaults(parseFaults(json));
}

let patched = false;

function patchClients(): void {
  if (patched) return;
  patched = true;
  const classes: [{ prototype: { send: (...args: never[]) => unknown } }, Service][] = [
    [DynamoDBClient, 'dynamodb'],
    [DynamoDBDocumentClient, 'dynamodb'],
    [SQSClient, 'sqs'],
    [SFNClient, 'sfn'],
  ];
  for (const [cls, service] of classes) {
    const original = cls.prototype.send;
    cls.prototype.send = function patchedSend(this: { middlewareStack: MiddlewareStackLike }, ...args: never[]) {
      installOn(this.middlewareStack, service);
      return original.apply(this, args);
    } as typeof original;
  }
}

interface MiddlewareStackLike {
  add(middleware: unknown, options: { step: string; priority?: string; name: string; override?: boolean }): void;
}

type Args = { input: Record<string, unknown> };
type Next = (args: Args) => Promise<{ output: Record<string, unknown> & { $metadata?: unknown }; response: unknown }>;

function installOn(stack: MiddlewareStackLike, service: Service): void {
  // A document client shares its stack with the client it wraps: install once per stack.
  if (installedStacks.has(stack)) return;
  installedStacks.add(stack);
  // Outside the SDK's retry loop: a failure reaches the caller.
  stack.add((next: Next, context: { commandName?: string }) => async (args: Args) => {
    const injector = active as (FaultInjector & { roll(kind: FaultKind): boolean; random: Random }) | undefined;
    if (!injector?.enabled) return next(args);
    if (injector.roll(`${service}.fail`)) throw serviceError(service, 'fail', context.commandName);
    if (service === 'dynamodb' && TRANSACTIONS.has(context.commandName ?? '') && injector.roll('dynamodb.transactionConflict')) {
      throw transactionConflict(injector, args);
    }
    if (service === 'sqs' && context.commandName === 'SendMessageCommand') return sendMessage(injector, next, args);
    if (service === 'sqs' && context.commandName === 'SendMessageBatchCommand') return sendMessageBatch(injector, next, args);
    return next(args);
  }, { step: 'initialize', priority: 'low', name: 'dtcFaults', override: true });
  // Inside the retry loop (after retryMiddleware, which is finalizeRequest/high): the SDK retries it.
  stack.add((next: Next, context: { commandName?: string }) => async (args: Args) => {
    const injector = active as (FaultInjector & { roll(kind: FaultKind): boolean }) | undefined;
    if (injector?.roll(`${service}.throttle`)) throw serviceError(service, 'throttle', context.commandName);
    return next(args);
  }, { step: 'finalizeRequest', priority: 'low', name: 'dtcThrottle', override: true });
}

function serviceError(service: Service, kind: 'fail' | 'throttle', command: string | undefined): Error {
  const throttle = kind === 'throttle';
  const name = throttle
    ? service === 'dynamodb'
      ? 'ProvisionedThroughputExceededException'
      : 'ThrottlingException'
    : { dynamodb: 'InternalServerError', sqs: 'InternalError', sfn: 'ServiceUnavailable' }[service];
  const error = new Error(`injected ${service}.${kind} on ${command ?? 'a call'}`);
  error.name = name;
  // What the SDK's deserializers attach to service errors: how it classifies them for retries.
  return Object.assign(error, {
    $fault: throttle ? 'client' : 'server',
    $metadata: { httpStatusCode: throttle ? 400 : 500, requestId: 'injected', attempts: 1, totalRetryDelay: 0 },
    ...(throttle ? { $retryable: { throttling: true } } : {}),
  });
}

const TRANSACTIONS = new Set(['TransactWriteItemsCommand', 'TransactGetItemsCommand']);

/** What the embedded DynamoDB answers when a transaction meets an item another one holds. */
function transactionConflict(injector: Injector, args: Args): TransactionCanceledException {
  const count = Math.max(1, (args.input.TransactItems as unknown[] | undefined)?.length ?? 1);
  const conflicting = injector.random.int(0, count - 1);
  const CancellationReasons = Array.from({ length: count }, (_, i) =>
    i === conflicting ? { Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' } : { Code: 'None' },
  );
  return new TransactionCanceledException({
    message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${CancellationReasons.map((r) => r.Code).join(', ')}]`,
    CancellationReasons,
    $metadata: { httpStatusCode: 400, requestId: 'injected', attempts: 1, totalRetryDelay: 0 },
  });
}

const md5 = (body: string): string => createHash('md5').update(body).digest('hex');

type Injector = FaultInjector & { roll(kind: FaultKind): boolean; random: Random };

async function sendMessage(injector: Injector, next: Next, args: Args) {
  const body = String(args.input.MessageBody ?? '');
  if (injector.roll('sqs.drop')) {
    // The sender sees a success (with the checksum the SDK verifies) and nothing is queued.
    return { output: { MessageId: `dropped-${injector.random.int(0, 2 ** 31)}`, MD5OfMessageBody: md5(body), $metadata: { httpStatusCode: 200 } }, response: {} };
  }
  const input = injector.roll('sqs.delay') ? { ...args.input, DelaySeconds: injector.random.int(1, injector.config['sqs.delayMaxSeconds']) } : args.input;
  const result = await next({ ...args, input });
  if (injector.roll('sqs.duplicate')) await next({ ...args, input: { ...input } });
  return result;
}

async function sendMessageBatch(injector: Injector, next: Next, args: Args) {
  type Entry = { Id: string; MessageBody?: string; DelaySeconds?: number };
  const entries = (args.input.Entries as Entry[] | undefined) ?? [];
  const dropped: Entry[] = [];
  const sent: Entry[] = [];
  entries.forEach((entry, i) => {
    if (injector.roll('sqs.drop')) {
      dropped.push(entry);
      return;
    }
    const delayed = injector.roll('sqs.delay') ? { ...entry, DelaySeconds: injector.random.int(1, injector.config['sqs.delayMaxSeconds']) } : entry;
    sent.push(delayed);
    // A copy only where the request stays within SendMessageBatch's 10 entries (the rest still to come included).
    if (injector.roll('sqs.duplicate') && sent.length + (entries.length - i - 1) < 10) sent.push({ ...delayed, Id: `${delayed.Id}-dup` });
  });
  const fakeSuccess = dropped.map((e) => ({ Id: e.Id, MessageId: `dropped-${injector.random.int(0, 2 ** 31)}`, MD5OfMessageBody: md5(e.MessageBody ?? '') }));
  if (sent.length === 0) return { output: { Successful: fakeSuccess, Failed: [], $metadata: { httpStatusCode: 200 } }, response: {} };
  const result = await next({ ...args, input: { ...args.input, Entries: sent } });
  const output = result.output as { Successful?: { Id: string }[]; Failed?: unknown[] };
  return {
    ...result,
    output: { ...result.output, Successful: [...(output.Successful ?? []).filter((s) => !s.Id.endsWith('-dup')), ...fakeSuccess] },
  };
}
