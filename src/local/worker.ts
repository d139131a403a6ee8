// An emulator (dynalite, fauxqs) on a worker thread of its own, so its CPU work (parsing, storage,
// HTTP) runs beside the thread that runs the Lambdas, Step Functions and the demo shop instead of in
// turn with it. A `kill -9` of the process takes its workers with it, as it took the emulators before.
// The worker script is plain JavaScript, so it loads the same under `node --import tsx` and vitest.
// Protocol: the worker posts `listening` (with its endpoint or port) or `error`, a `count` per request
// when metering (`requests`: the billable requests it is, default 1), and `stopped` after a `stop`
// message. Any other message goes to `onMessage`; `post` sends the worker one.
import { Worker } from 'node:worker_threads';

export interface EmulatorWorker {
  endpoint: string;
  /** Send the worker a message of its own protocol (e.g. a watch request). */
  post(message: Record<string, unknown>): void;
  stop(): Promise<void>;
}

export type WorkerMessage = { kind: string } & Record<string, unknown>;

type FromWorker =
  | { kind: 'listening'; endpoint?: string; port?: number }
  | { kind: 'count'; operation: string; resource: string | undefined; requests?: number }
  | { kind: 'error'; message: string }
  | { kind: 'stopped' };

export async function startEmulatorWorker(
  script: URL,
  workerData: Record<string, unknown>,
  onCount: (operation: string, resource: string | undefined, requests: number) => void,
  onMessage: (message: WorkerMessage) => void = () => undefined,
): Promise<EmulatorWorker> {
  const worker = new Worker(script, { workerData });
  let stopped: (() => void) | undefined;
  const endpoint = await new Promise<string>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the emulator worker ${script.pathname} exited (code ${code}) before it listened`)));
    worker.on('message', (m: FromWorker | WorkerMessage) => {
      if (m.kind === 'listening') resolve((m as { endpoint?: string }).endpoint ?? `http://127.0.0.1:${(m as { port?: number }).port}`);
      else if (m.kind === 'count') {
        const c = m as { operation: string; resource: string | undefined; requests?: number };
        onCount(c.operation, c.resource, c.requests ?? 1);
      } else if (m.kind === 'error') reject(new Error(`the emulator worker ${script.pathname} could not start: ${(m as { message: string }).message}`));
      else if (m.kind === 'stopped') stopped?.();
      else onMessage(m as WorkerMessage);
    });
  });
  worker.removeAllListeners('exit');
  worker.removeAllListeners('error');
  worker.on('error', (err) => console.error(`[dtc] the emulator worker ${script.pathname} failed:`, err));
  return {
    endpoint,
    post: (message) => worker.postMessage(message),
    async stop() {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2_000);
        stopped = () => {
          clearTimeout(timer);
          resolve();
        };
        worker.postMessage({ kind: 'stop' });
      });
      await worker.terminate();
    },
  };
}
