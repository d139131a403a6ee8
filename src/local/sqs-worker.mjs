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
  wakeOneWaiter(await load('sqs/sqsStore.js', 'SqsQueue'));
  const sqsStore = new (await load('sqs/sqsStore.js', 'SqsStore'))();
  sqsStore.host = '';
  return { sqsStore, snsStore: new (await load('sns/snsStore.js', 'SnsStore'))(), s3Store: new (await load('s3/s3Store.js', 'S3Store'))() };
}

/**
 * A message that arrives wakes one long poll, as on SQS, where the other receivers go on waiting
 * until their wait time runs out. fauxqs wakes every waiting ReceiveMessage of the queue, and all
 * but the one that takes the message answer at once with nothing: four pollers on a queue made
 * three empty receives (billable requests, and work in this process) per message. So: one waiter
 * per arrival, and none from inside a receive's own dequeue (which first moves due messages, and
 * would wake another waiter for the message it is about to take). Messages left ready (a woken
 * waiter whose request went away, visibility timeouts running out) wake the next waiter at the
 * queue's 20 ms timer, which runs while anyone waits.
 */
function wakeOneWaiter(SqsQueue) {
  const proto = SqsQueue?.prototype;
  if (typeof proto?.notifyWaiters !== 'function' || typeof proto.dequeue !== 'function') {
    throw new Error('fauxqs changed: SqsQueue.notifyWaiters or dequeue is gone (src/local/sqs-worker.mjs)');
  }
  const dequeue = proto.dequeue;
  proto.dequeue = function dequeueWithoutWaking(...args) {
    this.dequeuing = true;
    try {
      return dequeue.apply(this, args);
    } finally {
      this.dequeuing = false;
    }
  };
  proto.notifyWaiters = function notifyOneWaiter() {
    if (this.dequeuing) return;
    const waiter = this.pollWaiters.shift();
    if (!waiter) return;
    clearTimeout(waiter.timer);
    waiter.resolve();
  };
}

const PAYLOAD_CHUNK_BYTES = 64 * 1024;

/** A message's payload: its body and its attributes (names, types and values). */
function messageBytes(m) {
  let bytes = Buffer.byteLength(m?.MessageBody ?? m?.Body ?? '', 'utf8');
  for (const [name, a] of Object.entries(m?.MessageAttributes ?? {})) {
    bytes += Buffer.byteLength(name) + Buffer.byteLength(a?.DataType ?? '') + Buffer.byteLength(a?.StringValue ?? '') + (a?.BinaryValue ? Buffer.from(a.BinaryValue, 'base64').length : 0);
  }
  return bytes;
}

/**
 * The payload an SQS request carries: the messages it sends, or the messages it receives (for a
 * receive whose whole answer fits one chunk, the answer's size: the same single request).
 */
function payloadBytes(operation, body, response) {
  if (operation === 'SendMessage') return messageBytes(body);
  if (operation === 'SendMessageBatch') return (body?.Entries ?? []).reduce((sum, e) => sum + messageBytes(e), 0);
  if (operation === 'ReceiveMessage' && typeof response === 'string') {
    // The answer holds every byte of the messages' payload (JSON only adds to it): an answer that
    // fits one chunk is one request either way, and is not parsed a second time to learn so.
    const answerBytes = Buffer.byteLength(response, 'utf8');
    if (answerBytes <= PAYLOAD_CHUNK_BYTES) return answerBytes;
    try {
      return (JSON.parse(response).Messages ?? []).reduce((sum, m) => sum + messageBytes(m), 0);
    } catch {
      return 0;
    }
  }
  return 0;
}

try {
  // fauxqs' own start helpers bind 0.0.0.0; build the app and bind loopback ourselves.
  const app = buildApp({ logger: false, defaultRegion: 'us-east-1', stores: await stores() });
  if (workerData.meter) {
    // Counted once answered, in billable requests: SQS bills each 64 KB chunk of a request's payload
    // (the messages sent, or received) as one request.
    app.addHook('onSend', async (request, _reply, payload) => {
      const operation = String(request.headers['x-amz-target'] ?? '').split('.')[1] ?? 'unknown';
      const queueUrl = request.body?.QueueUrl;
      const requests = Math.max(1, Math.ceil(payloadBytes(operation, request.body, payload) / PAYLOAD_CHUNK_BYTES));
      parentPort.postMessage({ kind: 'count', operation, resource: queueUrl?.split('/').pop(), requests });
      return payload;
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
