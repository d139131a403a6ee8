// The console's HTTP side, one handler for both places it is served: under `/console` on the local
// API (`npm start`), and by `npm run console` for a deployed stack. The page and its libraries
// (uPlot, Cytoscape) come from this repository and node_modules, never a CDN. With an event feed
// (the embedded stack's), the page streams the published events too.
import { readFile } from 'node:fs/promises';
import type http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type EventFeed, streamEvents } from '../local/events';
import { BadRequest, type ConsoleSource } from './source';

export interface ConsoleInfo {
  /** `embedded` or `deployed`: the page says which stack it looks at. */
  target: string;
  apiUrl: string;
}

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ASSETS: Record<string, { file: string; type: string }> = {
  'console.js': { file: path.join(HERE, 'page', 'console.js'), type: 'text/javascript; charset=utf-8' },
  'console.css': { file: path.join(HERE, 'page', 'console.css'), type: 'text/css; charset=utf-8' },
  'uplot.js': { file: path.join(path.dirname(require.resolve('uplot')), 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  'uplot.css': { file: path.join(path.dirname(require.resolve('uplot')), 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
  'cytoscape.js': { file: path.join(path.dirname(require.resolve('cytoscape')), 'cytoscape.min.js'), type: 'text/javascript; charset=utf-8' },
};
const PAGE = path.join(HERE, 'page', 'console.html');
/** Everything the page loads comes from here: no CDN, no inline script. */
const CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'";
const MAX_BODY_BYTES = 16 * 1024;

export type ServeFn = (req: http.IncomingMessage, res: http.ServerResponse, pathname: string) => Promise<void>;

/** Serves `/console` and everything under it. */
export function consoleHandler(source: ConsoleSource, info: ConsoleInfo, events?: EventFeed): ServeFn {
  return async (req, res, pathname) => {
    if (!fromLoopback(req)) return send(res, 403, { error: 'the console answers requests for 127.0.0.1 or localhost only' });
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const rest = pathname.slice('/console'.length) || '/';
    try {
      if (method === 'GET' && rest === '/') return await sendFile(res, PAGE, 'text/html; charset=utf-8');
      const asset = /^\/assets\/([a-z.]+)$/.exec(rest)?.[1];
      if (method === 'GET' && asset && ASSETS[asset]) return await sendFile(res, ASSETS[asset].file, ASSETS[asset].type);
      if (method === 'GET' && rest === '/api/info') return send(res, 200, { ...info, services: source.services, events: events !== undefined });
      if (method === 'GET' && rest === '/api/overview') return send(res, 200, await source.overview());
      if (method === 'GET' && rest === '/api/events') {
        if (!events) return send(res, 404, { error: 'events are streamed for the embedded stack only' });
        return streamEvents(req, res, events);
      }
      if (method === 'GET' && rest === '/api/transactions') {
        const q = url.searchParams;
        const filter = {
          ...(q.get('status') ? { status: q.get('status')! } : {}),
          ...(q.get('participant') ? { participant: q.get('participant')! } : {}),
          ...(q.get('id') ? { id: q.get('id')!.trim() } : {}),
          ...(q.get('limit') ? { limit: Number(q.get('limit')) } : {}),
        };
        return send(res, 200, { items: await source.transactions(filter) });
      }
      const tx = /^\/api\/transactions\/([^/]+)(?:\/(abort|release))?$/.exec(rest);
      if (tx && method === 'GET' && !tx[2]) {
        const view = await source.transaction(decodeURIComponent(tx[1]!));
        return view ? send(res, 200, view) : send(res, 404, { error: `no transaction ${tx[1]}` });
      }
      if (method === 'GET' && rest === '/api/dead-letters') return send(res, 200, { items: await source.peek(url.searchParams.get('queue') ?? '') });
      if (method !== 'POST') return send(res, 404, { error: `no console route ${method} ${pathname}` });
      // Actions: JSON bodies only, and from the console's own origin (a page elsewhere cannot post here).
      const body = await jsonBody(req);
      if (tx && tx[2] === 'abort') {
        const reason = field(body, 'reason', false) ?? 'aborted from the console';
        const answer = await source.abort(decodeURIComponent(tx[1]!), reason);
        return send(res, answer.status, answer.body);
      }
      if (tx && tx[2] === 'release') {
        const answer = await source.release(decodeURIComponent(tx[1]!), {
          participant: field(body, 'participant', true)!,
          operator: field(body, 'operator', true)!,
          reason: field(body, 'reason', true)!,
        });
        return send(res, answer.status, answer.body);
      }
      if (rest === '/api/redrive') return send(res, 200, await source.redrive(field(body, 'queue', true)!));
      return send(res, 404, { error: `no console route ${method} ${pathname}` });
    } catch (err) {
      if (err instanceof BadRequest) return send(res, 400, { error: err.message });
      console.error(`[console] ${method} ${pathname}: ${(err as Error).stack ?? String(err)}`);
      return send(res, 502, { error: `the console could not read or act: ${(err as Error).message}` });
    }
  };
}

/**
 * The console acts with the operator's credentials: it answers only requests addressed to a
 * loopback name (a DNS-rebound name is refused) and, for actions, only from its own origin.
 */
function fromLoopback(req: http.IncomingMessage): boolean {
  const host = (req.headers.host ?? '').replace(/:\d+$/, '');
  if (host !== '127.0.0.1' && host !== 'localhost' && host !== '[::1]') return false;
  const origin = req.headers.origin;
  return req.method === 'GET' || origin === undefined || origin === `http://${req.headers.host}`;
}

async function jsonBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) throw new BadRequest('send the body as application/json');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new BadRequest(`the body must be at most ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let parsed: unknown;
  try {
    parsed = text === '' ? {} : JSON.parse(text);
  } catch {
    throw new BadRequest('the body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new BadRequest('the body must be a JSON object');
  return parsed as Record<string, unknown>;
}

function field(body: Record<string, unknown>, name: string, required: boolean): string | undefined {
  const value = body[name];
  if (value === undefined || value === '') {
    if (required) throw new BadRequest(`${name} is required`);
    return undefined;
  }
  if (typeof value !== 'string' || value.length > 2_000) throw new BadRequest(`${name} must be a string of at most 2000 characters`);
  return value;
}

async function sendFile(res: http.ServerResponse, file: string, type: string): Promise<void> {
  const body = await readFile(file);
  res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache', 'content-security-policy': CSP, 'x-content-type-options': 'nosniff' });
  res.end(body);
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}
