// fauxqs on a worker thread of its own (see sqs.ts). Plain JavaScript, so it loads the same under
// `node --import tsx` and vitest.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import { buildApp } from 'fauxqs';

/**
 * fauxqs names queues `http://sqs.<region>.localhost:<port>/...` unless its store has no host,
 * in which case it uses the request's Host header (`127.0.0.1:<port>`). The SDK sends each call
 * to its QueueUrl's host when that differs from the configured endpoint, and nothing resolves
 * `sqs.us-east-1.localhost` for every client, so the store is built here with its host cleared.
 * The package exports only its app, hence the import by file path.
 */
async function stores() {
  const candidates = createRequire(import.meta.url).resolve.paths('fauxqs') ?? [];
  const dist = candidates.map((d) => path.join(d, 'fauxqs', 'dist')).find((d) => existsSync(path.join(d, 'sqs', 'sqsStore.js')));
  if (!dist) throw new Error('fauxqs is not installed (run npm ci)');
  const load = async (file, name) => (await import(pathToFileURL(path.join(dist, file)).href))[name];
  const sqsStore = new (await load('sqs/sqsStore.js', 'SqsStore'))();
  sqsStore.host = '';
  return { sqsStore, snsStore: new (await load('sns/snsStore.js', 'SnsStore'))(), s3Store: new (await load('s3/s3Store.js', 'S3Store'))() };
}

try {
  // fauxqs' own start helpers bind 0.0.0.0; build the app and bind loopback ourselves.
  const app = buildApp({ logger: false, defaultRegion: 'us-east-1', stores: await stores() });
  if (workerData.meter) {
    app.addHook('preHandler', async (request) => {
      const operation = String(request.headers['x-amz-target'] ?? '').split('.')[1] ?? 'unknown';
      const queueUrl = request.body?.QueueUrl;
      parentPort.postMessage({ kind: 'count', operation, resource: queueUrl?.split('/').pop() });
    });
  }
  parentPort.on('message', (message) => {
    if (message?.kind !== 'stop') return;
    app.close().then(() => parentPort.postMessage({ kind: 'stopped' }));
  });
  const address = await app.listen({ host: '127.0.0.1', port: workerData.port ?? 0 });
  parentPort.postMessage({ kind: 'listening', endpoint: address.replace('localhost', '127.0.0.1') });
} catch (err) {
  parentPort.postMessage({ kind: 'error', message: err instanceof Error ? err.message : String(err) });
}
