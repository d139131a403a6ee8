// DynamoDB on loopback: dynalite (LevelDB). On disk for `npm start`, in memory for tests.
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import dynalite from 'dynalite';
import type { Meter } from './meter';

export interface LocalDynamo {
  endpoint: string;
  stop(): Promise<void>;
}

/** Start dynalite on 127.0.0.1. `path` keeps the data on disk; without it the data lives in memory. */
export async function startDynamo(options: { port?: number; path?: string; meter?: Meter } = {}): Promise<LocalDynamo> {
  // Tables become ACTIVE at once: the provisioner waits for nothing.
  const server: Server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(options.path ? { path: options.path } : {}) });
  const meter = options.meter;
  if (meter) {
    // dynalite reads bodies with 'data' listeners too, so a second listener sees every chunk.
    server.on('request', (req: import('node:http').IncomingMessage) => {
      const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? 'unknown';
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let table: string | undefined;
        try {
          table = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { TableName?: string }).TableName;
        } catch {
          table = undefined;
        }
        meter.count('dynamodb', operation, table);
      });
    });
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
