// SQS on loopback: fauxqs, speaking the JSON protocol of the current SDK. In memory only.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildApp } from 'fauxqs';
import type { Meter } from './meter';

export interface LocalSqs {
  endpoint: string;
  stop(): Promise<void>;
}

type Store = { host?: string };

/**
 * fauxqs names queues `http://sqs.<region>.localhost:<port>/...` unless its store has no host,
 * in which case it uses the request's Host header (`127.0.0.1:<port>`). The SDK sends each call
 * to its QueueUrl's host when that differs from the configured endpoint, and nothing resolves
 * `sqs.us-east-1.localhost` for every client, so the store is built here with its host cleared.
 * The package exports only its app, hence the import by file path.
 */
async function stores(): Promise<{ sqsStore: Store; snsStore: unknown; s3Store: unknown }> {
  const candidates = createRequire(import.meta.url).resolve.paths('fauxqs') ?? [];
  const dist = candidates.map((d) => path.join(d, 'fauxqs', 'dist')).find((d) => existsSync(path.join(d, 'sqs', 'sqsStore.js')));
  if (!dist) throw new Error('fauxqs is not installed (run npm ci)');
  const load = async (file: string, name: string) =>
    ((await import(pathToFileURL(path.join(dist, file)).href)) as Record<string, new () => unknown>)[name]!;
  const sqsStore = new (await load('sqs/sqsStore.js', 'SqsStore'))() as Store;
  sqsStore.host = '';
  return { sqsStore, snsStore: new (await load('sns/snsStore.js', 'SnsStore'))(), s3Store: new (await load('s3/s3Store.js', 'S3Store'))() };
}

export async function startSqs(options: { port?: number; meter?: Meter } = {}): Promise<LocalSqs> {
  // fauxqs' own start helpers bind 0.0.0.0; build the app and bind loopback ourselves.
  const app = buildApp({ logger: false, defaultRegion: 'us-east-1', stores: (await stores()) as never });
  const meter = options.meter;
  if (meter) {
    app.addHook('preHandler', async (request: { headers: Record<string, string | string[] | undefined>; body: unknown }) => {
      const operation = String(request.headers['x-amz-target'] ?? '').split('.')[1] ?? 'unknown';
      const queueUrl = (request.body as { QueueUrl?: string } | undefined)?.QueueUrl;
      meter.count('sqs', operation, queueUrl?.split('/').pop());
    });
  }
  const address = await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  return { endpoint: address.replace('localhost', '127.0.0.1'), stop: () => app.close() };
}
