// Lambda on loopback: handlers imported and invoked in this process with the event shapes AWS
// uses, and SQS event source mappings as pollers. One process means one environment: the
// provisioner merges the functions' environments and refuses conflicting values.
// With a meter, each invocation is counted with its billed duration and the bytes of the
// START/END/REPORT lines Lambda adds; after meterLogs(), also the bytes its handler writes to
// stdout/stderr (what CloudWatch Logs would ingest from it: each invocation runs in an
// AsyncLocalStorage context naming its function, so writes from any await inside it are its own).
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Context, SQSEvent, SQSRecord } from 'aws-lambda';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient, type Message } from '@aws-sdk/client-sqs';
import type { Meter } from './meter';

type Handler = (event: unknown, context: Context) => Promise<unknown>;

export interface LocalFunction {
  name: string;
  arn: string;
  entry: string;
  timeoutSeconds: number;
  /** MemorySize from the template (default 128, as Lambda's). */
  memoryMb?: number;
  handler?: Handler;
}

export class LambdaError extends Error {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}

export interface LambdaStats {
  invocations: number;
  errors: number;
}

export class LocalLambda {
  private readonly functions = new Map<string, LocalFunction>();
  private readonly pollers: Poller[] = [];
  private readonly schedules: NodeJS.Timeout[] = [];
  readonly stats: LambdaStats = { invocations: 0, errors: 0 };

  private logs: { echo: boolean } | undefined;

  constructor(
    private readonly root: string,
    private readonly options: { meter?: Meter } = {},
  ) {}

  /**
   * Count the bytes handlers write to stdout/stderr, by function, into the meter; with `echo: false`
   * they no longer reach the terminal. Opt-in: it runs every invocation in an AsyncLocalStorage
   * context, which costs every await in the process a little (about 2.5x on a bare await on Node 20).
   */
  meterLogs(options: { echo: boolean }): void {
    if (!this.options.meter) throw new Error('meterLogs needs a LocalLambda with a meter');
    this.logs = options;
    tapLogs();
  }

  register(fn: LocalFunction): void {
    this.functions.set(fn.name, fn);
    this.functions.set(fn.arn, fn);
  }

  /** Import every handler; call after the merged environment is in place. */
  async load(): Promise<void> {
    for (const fn of new Set(this.functions.values())) {
      const [file, exportName] = splitEntry(fn.entry);
      const mod = (await import(pathToFileURL(path.resolve(this.root, file)).href)) as Record<string, unknown>;
      const handler = mod[exportName];
      if (typeof handler !== 'function') throw new Error(`${fn.entry}: no exported function '${exportName}'`);
      fn.handler = handler as Handler;
    }
  }

  /** Invoke synchronously, as RequestResponse. A function error surfaces with its error type as name. */
  async invoke(nameOrArn: string, payload: unknown): Promise<unknown> {
    const fn = this.functions.get(nameOrArn) ?? this.functions.get(nameOrArn.split(':function:')[1]?.split(':')[0] ?? '');
    if (!fn?.handler) throw new LambdaError('Lambda.ResourceNotFoundException', `function ${nameOrArn} does not exist`);
    this.stats.invocations++;
    const started = Date.now();
    const startedMs = performance.now();
    const deadline = started + fn.timeoutSeconds * 1000;
    const context = lambdaContext(fn, deadline);
    const meter = this.options.meter;
    const logs = this.logs;
    const scope: InvocationScope | undefined = meter && logs ? { fn: fn.name, meter, echo: logs.echo } : undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new LambdaError('Sandbox.Timedout', `Task timed out after ${fn.timeoutSeconds.toFixed(2)} seconds`)),
        fn.timeoutSeconds * 1000,
      );
    });
    try {
      // Round-trip through JSON: a real invocation never shares objects with the caller.
      const event = JSON.parse(JSON.stringify(payload ?? {})) as unknown;
      const handler = fn.handler;
      const run = () => handler(event, context);
      const result = await Promise.race([scope ? invocationScope.run(scope, run) : run(), timeout]);
      return result === undefined ? null : (JSON.parse(JSON.stringify(result)) as unknown);
    } catch (err) {
      this.stats.errors++;
      throw err instanceof Error ? err : new LambdaError('Error', String(err));
    } finally {
      clearTimeout(timer);
      if (meter) {
        const durationMs = performance.now() - startedMs;
        meter.lambdaInvocation(fn.name, Math.ceil(durationMs), platformLogBytes(context.awsRequestId, durationMs, fn));
      }
    }
  }

  /** An SQS event source mapping: pollers that receive batches and invoke the function. */
  addSqsMapping(options: { functionName: string; queueUrl: string; queueArn: string; batchSize: number; reportBatchItemFailures: boolean; sqs: SQSClient; pollers?: number }): void {
    for (let i = 0; i < (options.pollers ?? 4); i++) {
      const poller = new Poller(this, options);
      this.pollers.push(poller);
      poller.start();
    }
  }

  /**
   * An EventBridge schedule: invoke every `periodSeconds`, never overlapping itself (a run that
   * outlasts the period delays the next one, as a single-concurrency target would).
   */
  addSchedule(options: { functionName: string; periodSeconds: number; event: unknown; name: string }): void {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      this.invoke(options.functionName, { ...(options.event as object), time: new Date().toISOString() })
        .catch((err: unknown) => console.error(`[events] ${options.name} -> ${options.functionName}: ${(err as Error).message}`))
        .finally(() => (running = false));
    }, options.periodSeconds * 1000);
    this.schedules.push(timer);
  }

  async stop(): Promise<void> {
    for (const timer of this.schedules) clearInterval(timer);
    await Promise.all(this.pollers.map((p) => p.stop()));
  }
}

class Poller {
  private readonly abort = new AbortController();
  private loop?: Promise<void>;

  constructor(
    private readonly lambda: LocalLambda,
    private readonly o: { functionName: string; queueUrl: string; queueArn: string; batchSize: number; reportBatchItemFailures: boolean; sqs: SQSClient },
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.abort.signal.aborted) {
      try {
        const out = await this.o.sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: this.o.queueUrl,
            MaxNumberOfMessages: this.o.batchSize,
            WaitTimeSeconds: 20,
            MessageSystemAttributeNames: ['All'],
            MessageAttributeNames: ['All'],
          }),
          { abortSignal: this.abort.signal },
        );
        if (out.Messages?.length) await this.deliver(out.Messages);
      } catch (err) {
        if (this.abort.signal.aborted) return;
        // The queue service hiccupped: back off briefly, as Lambda's pollers do.
        console.error(`[lambda] poller for ${this.o.functionName}: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  private async deliver(messages: Message[]): Promise<void> {
    const event: SQSEvent = { Records: messages.map((m) => sqsRecord(m, this.o.queueArn)) };
    let failed: Set<string>;
    try {
      const result = (await this.lambda.invoke(this.o.functionName, event)) as { batchItemFailures?: { itemIdentifier: string }[] } | null;
      failed = new Set(this.o.reportBatchItemFailures ? (result?.batchItemFailures ?? []).map((f) => f.itemIdentifier) : []);
    } catch (err) {
      // A failed invocation leaves the whole batch to reappear after its visibility timeout.
      console.error(`[lambda] ${this.o.functionName} failed on a batch of ${messages.length}: ${(err as Error).message}`);
      return;
    }
    const done = messages.filter((m) => !failed.has(m.MessageId!));
    if (done.length === 0) return;
    await this.o.sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: this.o.queueUrl,
        Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })),
      }),
    );
  }
}

function sqsRecord(m: Message, queueArn: string): SQSRecord {
  const a = m.Attributes ?? {};
  return {
    messageId: m.MessageId!,
    receiptHandle: m.ReceiptHandle!,
    body: m.Body ?? '',
    attributes: {
      ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
      SentTimestamp: a.SentTimestamp ?? String(Date.now()),
      SenderId: a.SenderId ?? 'local',
      ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
    },
    messageAttributes: {},
    md5OfBody: m.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: queueArn.split(':')[3] ?? 'us-east-1',
  };
}

function lambdaContext(fn: LocalFunction, deadline: number): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: fn.name,
    functionVersion: '$LATEST',
    invokedFunctionArn: fn.arn,
    memoryLimitInMB: String(fn.memoryMb ?? 128),
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${fn.name}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

function splitEntry(entry: string): [string, string] {
  const i = entry.lastIndexOf('#');
  return i < 0 ? [entry, 'handler'] : [entry.slice(0, i), entry.slice(i + 1)];
}

// ---- metering ------------------------------------------------------------------------------

interface InvocationScope {
  fn: string;
  meter: Meter;
  echo: boolean;
}

/** The invocation (if any) the current async context belongs to. */
const invocationScope = new AsyncLocalStorage<InvocationScope>();
let tapped = false;

/**
 * Count what handlers write to stdout and stderr, by function. Installed once per process and
 * left in place: outside a metered invocation (the emulators, the demo shop, a test) it only
 * passes through.
 */
function tapLogs(): void {
  if (tapped) return;
  tapped = true;
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
    stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      const scope = invocationScope.getStore();
      if (!scope) return write(chunk, ...rest);
      const encoding = typeof rest[0] === 'string' ? (rest[0] as BufferEncoding) : 'utf8';
      scope.meter.lambdaLog(scope.fn, typeof chunk === 'string' ? Buffer.byteLength(chunk, encoding) : chunk.length);
      if (scope.echo) return write(chunk, ...rest);
      const callback = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      callback?.();
      return true;
    }) as typeof stream.write;
  }
}

/**
 * The bytes of the lines Lambda itself logs per invocation (text format): START, END and REPORT.
 * Left out: a cold start's INIT_START line and Init Duration, and the XRAY line of a sampled
 * invocation under active tracing (a few percent of invocations at X-Ray's default sampling).
 */
export function platformLogBytes(requestId: string, durationMs: number, fn: Pick<LocalFunction, 'memoryMb'>): number {
  const memory = fn.memoryMb ?? 128;
  // Max Memory Used: a three-digit figure, as the coordinator's functions report (its value is not measured here).
  const used = Math.min(memory, 100);
  const lines = [
    `START RequestId: ${requestId} Version: $LATEST\n`,
    `END RequestId: ${requestId}\n`,
    `REPORT RequestId: ${requestId}\tDuration: ${durationMs.toFixed(2)} ms\tBilled Duration: ${Math.ceil(durationMs)} ms\tMemory Size: ${memory} MB\tMax Memory Used: ${used} MB\t\n`,
  ];
  return lines.reduce((sum, line) => sum + Buffer.byteLength(line), 0);
}
