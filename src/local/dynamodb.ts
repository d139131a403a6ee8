// DynamoDB on loopback: dynalite (LevelDB) on a worker thread of its own (dynamodb-worker.mjs, see
// worker.ts), with the transactions, TTL and crash-atomic writes it lacks added there. On disk for
// `npm start`, in memory for tests. With a meter, every request is counted
// and charged in request units as AWS bills them (see dynamodb-worker.mjs).
import type { DynamoCharge, Meter } from './meter';
import { startEmulatorWorker, type WorkerMessage } from './worker';

/** An item whose watched attribute changed to a watched value: its top-level scalars, numbers as text. */
export type WatchedItem = Record<string, string | boolean>;

export interface LocalDynamo {
  endpoint: string;
  /**
   * Call `listener` whenever a write sets `attribute` of an item of `table` to one of `values`
   * (a change, not a rewrite of the same value). Seen inside the embedded DynamoDB, so watching
   * adds no request. Returns an unsubscribe function.
   */
  watch(table: string, attribute: string, values: readonly string[], listener: (item: WatchedItem) => void): () => void;
  stop(): Promise<void>;
}

export interface DynamoOptions {
  port?: number;
  /** Keep the data on disk here; without it the data lives in memory. */
  path?: string;
  meter?: Meter;
  /** How often the reaper deletes items whose time to live has passed (default 1000 ms). */
  ttlReaperMs?: number;
}

/** Start dynalite on 127.0.0.1 (with transactions and TTL: see dynamodb-worker.mjs). */
export async function startDynamo(options: DynamoOptions = {}): Promise<LocalDynamo> {
  const meter = options.meter;
  const listeners = new Map<string, Set<(item: WatchedItem) => void>>();
  const worker = await startEmulatorWorker(
    new URL('./dynamodb-worker.mjs', import.meta.url),
    { path: options.path, port: options.port, meter: Boolean(meter), ...(options.ttlReaperMs ? { ttlReaperMs: options.ttlReaperMs } : {}) },
    (operation, table) => meter?.count('dynamodb', operation, table),
    (message: WorkerMessage) => {
      if (message.kind === 'charges') meter?.chargeDynamo(message.charges as DynamoCharge[]);
      else if (message.kind === 'change') for (const l of listeners.get(message.watch as string) ?? []) l(message.item as WatchedItem);
    },
  );
  return {
    endpoint: worker.endpoint,
    watch(table, attribute, values, listener) {
      const id = JSON.stringify([table, attribute, [...values].sort()]);
      let set = listeners.get(id);
      if (!set) {
        listeners.set(id, (set = new Set()));
        worker.post({ kind: 'watch', id, table, attribute, values: [...values] });
      }
      set.add(listener);
      return () => void set.delete(listener);
    },
    stop: () => worker.stop(),
  };
}
