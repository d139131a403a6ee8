// DynamoDB on loopback: dynalite (LevelDB). On disk for `npm start`, in memory for tests.
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import dynalite from 'dynalite';

export interface LocalDynamo {
  endpoint: string;
  stop(): Promise<void>;
}

/** Start dynalite on 127.0.0.1. `path` keeps the data on disk; without it the data lives in memory. */
export async function startDynamo(options: { port?: number; path?: string } = {}): Promise<LocalDynamo> {
  // Tables become ACTIVE at once: the provisioner waits for nothing.
  const server: Server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(options.path ? { path: options.path } : {}) });
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
