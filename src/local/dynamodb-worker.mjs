// dynalite on a worker thread of its own (see worker.ts): LevelDB, JSON and HTTP parsing on the
// second core instead of the thread that runs the Lambdas, Step Functions and the demo shop.
// Plain JavaScript, so it loads the same under `node --import tsx` and vitest.
import { createRequire } from 'node:module';
import { parentPort, workerData } from 'node:worker_threads';

const require = createRequire(import.meta.url);
const dynalite = require('dynalite');

const { path, port, meter } = workerData;
// Tables become ACTIVE at once: the provisioner waits for nothing.
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(path ? { path } : {}) });

if (meter) {
  // dynalite reads bodies with 'data' listeners too, so a second listener sees every chunk.
  server.on('request', (req) => {
    const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? 'unknown';
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let table;
      try {
        table = JSON.parse(Buffer.concat(chunks).toString('utf8')).TableName;
      } catch {
        table = undefined;
      }
      parentPort.postMessage({ kind: 'count', operation, resource: table });
    });
  });
}

parentPort.on('message', (message) => {
  if (message?.kind !== 'stop') return;
  server.closeAllConnections?.();
  server.close(() => parentPort.postMessage({ kind: 'stopped' }));
});

server.once('error', (err) => parentPort.postMessage({ kind: 'error', message: err.message }));
server.listen(port ?? 0, '127.0.0.1', () => parentPort.postMessage({ kind: 'listening', port: server.address().port }));
