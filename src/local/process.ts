// The embedded stack with the demo shop in a child process, so a test can kill it with SIGKILL and
// start it again on the same data directory: what `kill -9` of `npm start` does, on purpose.
//
// Parent side: `spawnStack({ home, faults, context, demo })` resolves once the child is ready.
// Child side: this file run as a script; it reads its settings from the environment
// (DTC_HOME, DTC_FAULTS, DTC_CONTEXT, DTC_DEMO), prints one `DTC_READY <json>` line, then a
// `DTC_FAULTS <json>` line with the injected fault counts every second. SIGUSR2 stops injecting
// faults ("the faults heal"); SIGTERM stops the stack cleanly.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { FaultInput, FaultKind } from './faults';
import type { StackTemplate } from './provision';

/** The demo's options a child takes (JSON in DTC_DEMO; startDemo in src/local/demo-routes.ts). */
interface DemoProcessOptions {
  inquireAfterMs?: number;
  visibilityTimeoutSeconds?: number;
  locks?: false;
  leaseMs?: number;
}

export interface StackProcessOptions {
  /**
   * Data directory (DynamoDB on disk); the same directory across restarts. The first life also
   * caches the synthesized templates there, so use a fresh directory per run (and per context).
   */
  home: string;
  faults?: FaultInput;
  /** CDK context overrides (participants, sweeperLocalRateSeconds ...). */
  context?: Record<string, unknown>;
  demo?: DemoProcessOptions;
  /** Every line the child prints (stdout and stderr), for diagnosis. */
  onLine?: (line: string) => void;
  /** Give up waiting for DTC_READY after this long (default 120 s). */
  readyTimeoutMs?: number;
}

export interface ChildReady {
  pid: number;
  apiUrl: string;
  endpoints: { dynamodb: string; sqs: string; stepfunctions: string };
  txTable: string;
  demoTables: Record<string, string>;
}

export interface StackProcess {
  readonly ready: ChildReady;
  /** Fault counts as last reported (at most a second old; a SIGKILL loses the last second). */
  faultCounts(): Partial<Record<FaultKind, number>>;
  /** Stop injecting faults. */
  heal(): void;
  /** SIGKILL, and wait until the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (a clean stop), and wait; SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  readonly exited: Promise<number | null>;
}

const READY = 'DTC_READY ';
const FAULTS = 'DTC_FAULTS ';

export function spawnStack(options: StackProcessOptions): Promise<StackProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
    env: {
      ...process.env,
      DTC_HOME: options.home,
      DTC_FAULTS: options.faults ? JSON.stringify(options.faults) : '',
      DTC_CONTEXT: options.context ? JSON.stringify(options.context) : '',
      DTC_DEMO: options.demo ? JSON.stringify(options.demo) : '',
      POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL ?? 'ERROR',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let counts: Partial<Record<FaultKind, number>> = {};
  return new Promise<StackProcess>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the stack process did not become ready within ${options.readyTimeoutMs ?? 120_000} ms`));
    }, options.readyTimeoutMs ?? 120_000);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`the stack process exited with ${code} before it was ready`));
    });
    const onLine = (line: string): void => {
      if (line.startsWith(FAULTS)) {
        counts = JSON.parse(line.slice(FAULTS.length)) as typeof counts;
        return;
      }
      if (line.startsWith(READY)) {
        clearTimeout(timer);
        const ready = JSON.parse(line.slice(READY.length)) as ChildReady;
        const waitExit = async (): Promise<void> => {
          await exited;
        };
        resolve({
          ready,
          exited,
          faultCounts: () => ({ ...counts }),
          heal: () => child.kill('SIGUSR2'),
          async kill() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
            await waitExit();
          },
          async stop(graceMs = 15_000) {
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.kill('SIGTERM');
            const force = setTimeout(() => child.kill('SIGKILL'), graceMs);
            await waitExit();
            clearTimeout(force);
          },
        });
        return;
      }
      options.onLine?.(line);
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', (line) => options.onLine?.(line));
  });
}

// ---------------------------------------------------------------------------------------------
// Child side

async function childMain(): Promise<void> {
  const home = process.env.DTC_HOME;
  if (!home) throw new Error('DTC_HOME must be set');
  // Imported here so that the parent side stays light (no SDK, no CDK in the test process).
  const { installFaultsFromEnv } = await import('./faults');
  const { startLocalStack, synthesize } = await import('./stack');
  const { startDemo } = await import('./demo-routes');
  const faults = installFaultsFromEnv();
  const context = process.env.DTC_CONTEXT ? (JSON.parse(process.env.DTC_CONTEXT) as Record<string, unknown>) : undefined;
  const demoOptions = process.env.DTC_DEMO ? (JSON.parse(process.env.DTC_DEMO) as DemoProcessOptions) : {};
  // The synth takes seconds; a restart in the same home reuses the first life's templates.
  const cacheFile = path.join(home, 'templates.json');
  let templates: StackTemplate[];
  try {
    templates = JSON.parse(await readFile(cacheFile, 'utf8')) as StackTemplate[];
  } catch {
    templates = synthesize(context);
    await mkdir(home, { recursive: true });
    await writeFile(cacheFile, JSON.stringify(templates));
  }
  const stack = await startLocalStack({ home, port: 0, templates, ...(context ? { context } : {}) });
  const demo = await startDemo(stack, { ...demoOptions, ...(faults ? { wrapParticipant: faults.wrapParticipant, wrapBarrierStore: faults.wrapBarrierStore } : {}) });
  // Faults start after provisioning and seeding: a failed CreateTable is not what is being tested.
  if (faults) faults.enabled = true;
  const ready: ChildReady = {
    pid: process.pid,
    apiUrl: stack.outputs.apiUrl,
    endpoints: stack.outputs.endpoints,
    txTable: stack.outputs.txTable,
    demoTables: demo.tables,
  };
  process.stdout.write(`${READY}${JSON.stringify(ready)}\n`);
  const report = setInterval(() => {
    if (faults) process.stdout.write(`${FAULTS}${JSON.stringify(faults.stats())}\n`);
  }, 1_000);
  process.on('SIGUSR2', () => {
    if (faults) faults.enabled = false;
    if (faults) process.stdout.write(`${FAULTS}${JSON.stringify(faults.stats())}\n`);
  });
  process.on('SIGTERM', () => {
    clearInterval(report);
    if (faults) faults.enabled = false;
    void demo
      .stop()
      .then(() => stack.stop())
      .finally(() => process.exit(0));
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  childMain().catch((err: unknown) => {
    console.error(`[stack process] ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  });
}
