// EventBridge on loopback: the `PutEvents` call of the AWS JSON 1.1 protocol (`X-Amz-Target:
// AWSEvents.PutEvents`), so the real `@aws-sdk/client-eventbridge` publishes here unchanged through
// AWS_ENDPOINT_URL_EVENTBRIDGE. Entries are checked as EventBridge checks them (1-10 per call, Source,
// DetailType and Detail required, Detail a JSON object, 256 KB per call), each accepted one is
// counted in the meter (`eventsPublished`: EventBridge bills per 64 KB chunk of an entry; ours are
// far smaller; and the call as a request, which is what the PutEvents quota counts), kept in memory
// (the most recent MAX_KEPT) and told to listeners: the local API's `GET /events` streams them as
// Server-Sent Events, and the console shows them. No rules match here: nothing on the embedded
// stack subscribes to these events but the stream.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Meter } from './meter';

/** An event as EventBridge delivers it to a target. */
export interface PublishedEvent {
  version: '0';
  id: string;
  'detail-type': string;
  source: string;
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: unknown;
  /** The bus it was put on (not part of EventBridge's envelope; kept for the stream). */
  bus: string;
}

/** EventBridge's limits on one PutEvents call. */
export const PUT_EVENTS_MAX_ENTRIES = 10;
export const PUT_EVENTS_MAX_BYTES = 256 * 1024;
/** Events kept for late subscribers and the console's first view. */
export const MAX_KEPT = 500;

interface EntryResult {
  EventId?: string;
  ErrorCode?: string;
  ErrorMessage?: string;
}

export interface LocalEventsOptions {
  region: string;
  accountId: string;
  meter?: Meter;
  now?: () => number;
}

export class LocalEvents {
  private readonly kept: PublishedEvent[] = [];
  private readonly listeners = new Set<(event: PublishedEvent) => void>();
  /** Custom buses of the provisioned app (by name); `default` always exists. */
  private readonly buses = new Set<string>(['default']);
  private server?: http.Server;

  constructor(private readonly options: LocalEventsOptions) {}

  addBus(name: string): void {
    this.buses.add(name);
  }

  /** The most recent events, oldest first. */
  recent(): PublishedEvent[] {
    return [...this.kept];
  }

  /** Called with each event published from now on; answers the function that stops it. */
  subscribe(listener: (event: PublishedEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async listen(port = 0): Promise<string> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        console.error(`[events] ${(err as Error).stack ?? String(err)}`);
        if (!res.headersSent) reply(res, 500, { __type: 'InternalException', message: 'internal error' });
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** One PutEvents call's body; answers what EventBridge answers (status and JSON body). */
  putEvents(raw: string): { status: number; body: unknown } {
    if (Buffer.byteLength(raw, 'utf8') > PUT_EVENTS_MAX_BYTES + 4096) return validation(`the request is larger than ${PUT_EVENTS_MAX_BYTES} bytes`);
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      return { status: 400, body: { __type: 'SerializationException', message: 'the body is not JSON' } };
    }
    const entries = (body as { Entries?: unknown } | null)?.Entries;
    if (!Array.isArray(entries) || entries.length < 1 || entries.length > PUT_EVENTS_MAX_ENTRIES) {
      return validation(`Entries must be a list of 1 to ${PUT_EVENTS_MAX_ENTRIES} entries`);
    }
    const size = entries.reduce((sum: number, e) => sum + entrySize(e), 0);
    if (size > PUT_EVENTS_MAX_BYTES) return validation(`Total size of the entries in the request is over the limit (${size} > ${PUT_EVENTS_MAX_BYTES} bytes)`);
    const results = entries.map((e) => this.accept(e));
    const accepted = results.filter((r) => r.EventId !== undefined).length;
    this.options.meter?.count('events', 'PutEvents', undefined);
    this.options.meter?.eventsPublished(accepted);
    return { status: 200, body: { FailedEntryCount: results.length - accepted, Entries: results } };
  }

  private accept(entry: unknown): EntryResult {
    const e = (entry ?? {}) as Record<string, unknown>;
    for (const field of ['Source', 'DetailType', 'Detail'] as const) {
      if (typeof e[field] !== 'string' || e[field] === '') return { ErrorCode: 'InvalidArgument', ErrorMessage: `Parameter(s) ${field} must be specified.` };
    }
    let detail: unknown;
    try {
      detail = JSON.parse(e.Detail as string);
    } catch {
      return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed.' };
    }
    if (typeof detail !== 'object' || detail === null || Array.isArray(detail)) return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail must be a JSON object.' };
    const busName = typeof e.EventBusName === 'string' && e.EventBusName !== '' ? e.EventBusName.replace(/^arn:[^:]+:events:[^:]*:\d*:event-bus\//, '') : 'default';
    if (!this.buses.has(busName)) return { ErrorCode: 'InvalidArgument', ErrorMessage: `Event bus ${busName} does not exist.` };
    const time = e.Time === undefined ? new Date((this.options.now ?? Date.now)()) : new Date(typeof e.Time === 'number' ? e.Time * 1000 : String(e.Time));
    if (Number.isNaN(time.getTime())) return { ErrorCode: 'InvalidArgument', ErrorMessage: 'Parameter Time is not valid.' };
    const event: PublishedEvent = {
      version: '0',
      id: randomUUID(),
      'detail-type': e.DetailType as string,
      source: e.Source as string,
      account: this.options.accountId,
      time: time.toISOString().replace(/\.\d{3}Z$/, 'Z'),
      region: this.options.region,
      resources: Array.isArray(e.Resources) ? e.Resources.map(String) : [],
      detail,
      bus: busName,
    };
    this.kept.push(event);
    if (this.kept.length > MAX_KEPT) this.kept.splice(0, this.kept.length - MAX_KEPT);
    for (const listener of this.listeners) listener(event);
    return { EventId: event.id };
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > 2 * PUT_EVENTS_MAX_BYTES) {
        reply(res, 413, validation('the request is too large').body);
        return;
      }
      chunks.push(chunk as Buffer);
    }
    const target = String(req.headers['x-amz-target'] ?? '');
    if (req.method !== 'POST' || target !== 'AWSEvents.PutEvents') {
      reply(res, 400, { __type: 'UnknownOperationException', message: `the local events endpoint serves PutEvents only, not '${target || req.method}'` });
      return;
    }
    const answer = this.putEvents(Buffer.concat(chunks).toString('utf8'));
    reply(res, answer.status, answer.body);
  }
}

/** Events a new stream subscriber gets first (the most recent ones). */
const REPLAYED_EVENTS = 100;
const KEEPALIVE_MS = 15_000;

/** What a stream reads events from. */
export interface EventFeed {
  recent(): { id: string }[];
  subscribe(listener: (event: { id: string }) => void): () => void;
}

/**
 * `GET /events`: Server-Sent Events. First the most recent events (or those after `Last-Event-ID`,
 * so a reconnecting client misses none that are still kept), then each one as it is published.
 */
export function streamEvents(req: http.IncomingMessage, res: http.ServerResponse, events: EventFeed): void {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const write = (event: { id: string }) => res.write(`id: ${event.id}\nevent: dtc\ndata: ${JSON.stringify(event)}\n\n`);
  res.write('retry: 2000\n\n');
  const recent = events.recent();
  const last = req.headers['last-event-id'];
  const after = typeof last === 'string' ? recent.findIndex((e) => e.id === last) : -1;
  for (const e of after >= 0 ? recent.slice(after + 1) : recent.slice(-REPLAYED_EVENTS)) write(e);
  const unsubscribe = events.subscribe(write);
  const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS);
  res.on('close', () => {
    clearInterval(keepalive);
    unsubscribe();
  });
}

/** An entry's size as EventBridge counts it: Time 14 bytes, and the UTF-8 bytes of Source, DetailType, Detail, Resources. */
function entrySize(entry: unknown): number {
  const e = (entry ?? {}) as Record<string, unknown>;
  const text = (v: unknown) => (typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : 0);
  const resources = Array.isArray(e.Resources) ? e.Resources.reduce((s: number, r) => s + text(r), 0) : 0;
  return (e.Time === undefined ? 0 : 14) + text(e.Source) + text(e.DetailType) + text(e.Detail) + resources;
}

function validation(message: string): { status: number; body: unknown } {
  return { status: 400, body: { __type: 'ValidationException', message } };
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
  res.end(JSON.stringify(body));
}
