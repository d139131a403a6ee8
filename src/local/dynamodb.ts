// DynamoDB on loopback: dynalite (LevelDB) on a worker thread of its own (dynamodb-worker.mjs, see
// worker.ts). On disk for `npm start`, in memory for tests.
import type { Meter } from './meter';
import { startEmulatorWorker } from './worker';

export interface LocalDynamo {
  endpoint: string;
  stop(): Promise<void>;
}

/** Start dynalite on 127.0.0.1. `path` keeps the data on disk; without it the data lives in memory. */
export async function startDynamo(options: { port?: number; path?: string; meter?: Meter } = {}): Promise<LocalDynamo> {
  const meter = options.meter;
  return startEmulatorWorker(
    new URL('./dynamodb-worker.mjs', import.meta.url),
    { path: options.path, port: options.port, meter: Boolean(meter) },
    (operation, table) => meter?.count('dynamodb', operation, table),
  );
}
