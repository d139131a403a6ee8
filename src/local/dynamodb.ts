// DynamoDB on loopback: dynalite (LevelDB), on a worker thread of its own (dynamodb-worker.mjs), so
// the emulator's CPU work runs beside the coordinator's instead of in turn with it. On disk for
// `npm start`, in memory for tests. A `kill -9` of the process takes the worker with it, as before.
import { Worker } from 'node:worker_threads';
import type { Meter } from './meter';

export interface LocalDynamo {
  endpoint: string;
  stop(): Promise<void>;
}

type FromWorker =
  | { kind: 'listening'; port: number }
  | { kind: 'count'; operation: string; table: string | undefined }
  | { kind: 'error'; message: string }
  | { kind: 'stopped' };

/** Start dynalite on 127.0.0.1. `path` keeps the data on disk; without it the data lives in memory. */
export async function startDynamo(options: { port?: number; path?: string; meter?: Meter } = {}): Promise<LocalDynamo> {
  const worker = new Worker(new URL('./dynamodb-worker.mjs', import.meta.url), {
    workerData: { path: options.path, port: options.port, meter: Boolean(options.meter) },
  });
  const meter = options.meter;
  let stopped: (() => void) | undefined;
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the DynamoDB worker exited (code ${code}) before it listened`)));
    worker.on('message', (m: FromWorker) => {
      if (m.kind === 'listening') resolve(m.port);
      else if (m.kind === 'count') meter?.count('dynamodb', m.operation, m.table);
      else if (m.kind === 'error') reject(new Error(`dynalite could not listen: ${m.message}`));
      else stopped?.();
    });
  });
  worker.removeAllListeners('exit');
  worker.removeAllListeners('error');
  worker.on('error', (err) => console.error('[dtc] the DynamoDB worker failed:', err));
  return {
    endpoint: `http://127.0.0.1:${port}`,
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
