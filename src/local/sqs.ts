// SQS on loopback: fauxqs, speaking the JSON protocol of the current SDK, in memory, on a worker
// thread of its own (sqs-worker.mjs) like DynamoDB (see dynamodb.ts). With a meter, each request is
// counted in billable requests (one per 64 KB chunk of payload).
import type { Meter } from './meter';
import { startEmulatorWorker } from './worker';

export interface LocalSqs {
  endpoint: string;
  stop(): Promise<void>;
}

export async function startSqs(options: { port?: number; meter?: Meter } = {}): Promise<LocalSqs> {
  const meter = options.meter;
  return startEmulatorWorker(new URL('./sqs-worker.mjs', import.meta.url), { port: options.port, meter: Boolean(meter) }, (operation, resource, requests) =>
    meter?.count('sqs', operation, resource, requests),
  );
}
