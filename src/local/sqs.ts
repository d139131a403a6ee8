// SQS on loopback: fauxqs, speaking the JSON protocol of the current SDK. In memory only.
import { buildApp } from 'fauxqs';

export interface LocalSqs {
  endpoint: string;
  stop(): Promise<void>;
}

export async function startSqs(options: { port?: number } = {}): Promise<LocalSqs> {
  // fauxqs' own start helpers bind 0.0.0.0; build the app and bind loopback ourselves.
  // No `host` option: fauxqs then builds queue URLs from the request's Host header (127.0.0.1:port),
  // which the SDK can parse; with a host it makes sqs.<region>.<host>, invalid for an IP address.
  const app = buildApp({ logger: false, defaultRegion: 'us-east-1' });
  const address = await app.listen({ host: '127.0.0.1', port: options.port ?? 0 });
  return { endpoint: address.replace('localhost', '127.0.0.1'), stop: () => app.close() };
}
