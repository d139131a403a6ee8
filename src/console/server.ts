// `npm run console -- --outputs cdk-outputs.json [--port 4100] [--region eu-west-1]`: the console
// for a deployed stack. A server on 127.0.0.1 that serves the same page as the embedded stack's
// `/console`, reads the stack's tables and queues with the operator's AWS credentials (the SDK's
// default chain: environment, profile, SSO, instance role...), and calls its API signed with them
// (SigV4, `execute-api`). Whatever the operator's IAM identity may not do, the console cannot either.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SQSClient } from '@aws-sdk/client-sqs';
import { type DeployedOutputs, readDeployedOutputs } from '../../localstack/outputs';
import { signedHeaders } from '../local/sigv4';
import { consoleHandler } from './handler';
import { ConsoleSource } from './source';

export const DEFAULT_PORT = 4100;

export interface ConsoleServerOptions {
  outputs: DeployedOutputs;
  dynamodb: DynamoDBClient;
  sqs: SQSClient;
  port?: number;
}

export interface ConsoleServer {
  url: string;
  stop(): Promise<void>;
}

/** The region of a deployed API's URL (`https://<id>.execute-api.<region>.amazonaws.com/<stage>/`), if it says. */
export function apiRegion(apiUrl: string): string | undefined {
  return /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com/.exec(apiUrl)?.[1];
}

export async function startConsoleServer(options: ConsoleServerOptions): Promise<ConsoleServer> {
  const { outputs, dynamodb } = options;
  const source = new ConsoleSource({
    targets: outputs,
    dynamodb,
    sqs: options.sqs,
    // API requests are signed with SigV4 with the DynamoDB client's credentials, resolved on every
    // call (the SDK caches them and refreshes them before they expire), in the API's region.
    sign: async (request) => signedHeaders(request, await dynamodb.config.credentials(), apiRegion(outputs.apiUrl) ?? (await dynamodb.config.region())),
  });
  const serve = consoleHandler(source, { target: 'deployed', apiUrl: outputs.apiUrl });
  const server = http.createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://127.0.0.1').pathname.replace(/\/+$/, '') || '/';
    if (pathname === '/') return void res.writeHead(302, { location: '/console' }).end();
    if (pathname !== '/console' && !pathname.startsWith('/console/')) return void res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found');
    serve(req, res, pathname).catch((err: unknown) => {
      console.error(`[console] ${(err as Error).stack ?? String(err)}`);
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? DEFAULT_PORT, '127.0.0.1', () => resolve());
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { outputs: { type: 'string' }, port: { type: 'string' }, region: { type: 'string' } } });
  if (!values.outputs) throw new Error('usage: npm run console -- --outputs cdk-outputs.json [--port 4100] [--region <region>]');
  const port = values.port === undefined ? DEFAULT_PORT : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be a port number, got '${values.port}'`);
  const outputs = readDeployedOutputs(JSON.parse(readFileSync(values.outputs, 'utf8')) as unknown, values.outputs);
  const region = values.region ?? apiRegion(outputs.apiUrl) ?? process.env.AWS_REGION;
  if (!region) throw new Error(`cannot tell the region from the API URL ${outputs.apiUrl}: pass --region`);
  const server = await startConsoleServer({ outputs, dynamodb: new DynamoDBClient({ region }), sqs: new SQSClient({ region }), port });
  console.log(`[console] ${outputs.apiUrl} (${region}), with your AWS credentials`);
  console.log(`[console] open ${server.url}/console`);
  const stop = () => void server.stop().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(`[console] ${(err as Error).message}`);
    process.exit(1);
  });
}
