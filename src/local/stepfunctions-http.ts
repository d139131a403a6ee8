// The wire side of the local Step Functions: AWS JSON 1.0, as @aws-sdk/client-sfn speaks it.
// POST / with `X-Amz-Target: AWSStepFunctions.<Operation>`; errors are HTTP 400 with a `__type`
// whose part after '#' the SDK turns into the exception's name (TaskTimedOut, InvalidToken ...).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';

/** An error the service answers to a caller, named as AWS names it (e.g. `TaskDoesNotExist`). */
export class SfnError extends Error {
  constructor(code: string, message: string) {
    super(message);
    this.name = code;
  }
}

export type OperationHandler = (operation: string, body: Record<string, unknown>) => unknown;

export interface JsonProtocolServer {
  endpoint: string;
  close(): Promise<void>;
}

const TARGET_PREFIX = 'AWSStepFunctions.';
const CONTENT_TYPE = 'application/x-amz-json-1.0';
// Request bodies are small JSON documents; the largest legal one (256 KiB of input) fits easily.
const MAX_BODY_BYTES = 4 * 1024 * 1024;

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': CONTENT_TYPE,
    'content-length': Buffer.byteLength(text),
    'x-amzn-requestid': randomUUID(),
  });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  send(res, status, { __type: `com.amazonaws.swf.service.v2.model#${code}`, message });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new SfnError('ValidationException', 'request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function handle(req: IncomingMessage, res: ServerResponse, handler: OperationHandler): Promise<void> {
  const target = req.headers['x-amz-target'];
  if (req.method !== 'POST' || typeof target !== 'string' || !target.startsWith(TARGET_PREFIX)) {
    sendError(res, 400, 'UnknownOperationException', `expected POST with X-Amz-Target ${TARGET_PREFIX}<Operation>`);
    return;
  }
  let body: Record<string, unknown>;
  try {
    const text = await readBody(req);
    const parsed: unknown = text.trim() === '' ? {} : JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('body must be a JSON object');
    body = parsed as Record<string, unknown>;
  } catch (err) {
    sendError(res, 400, 'SerializationException', (err as Error).message);
    return;
  }
  try {
    send(res, 200, (await handler(target.slice(TARGET_PREFIX.length), body)) ?? {});
  } catch (err) {
    if (err instanceof SfnError) sendError(res, 400, err.name, err.message);
    else sendError(res, 500, 'InternalFailure', err instanceof Error ? err.message : String(err));
  }
}

/** Serve `handler` on 127.0.0.1 (never another interface: this stack has no authentication). */
export async function serveJsonProtocol(handler: OperationHandler, port = 0): Promise<JsonProtocolServer> {
  const server: Server = createServer((req, res) => {
    void handle(req, res, handler);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${bound}`,
    close: () =>
      new Promise<void>((resolve) => {
        // SDK clients keep connections alive; without this, close() waits for them to idle out.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
