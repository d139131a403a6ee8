// The embedded stack's EventBridge endpoint (src/local/events.ts), driven by the real
// @aws-sdk/client-eventbridge: PutEvents as EventBridge answers it, each accepted entry metered as
// an event published, and the events streamed as Server-Sent Events (`GET /events`).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_ACCOUNT, LOCAL_CREDENTIALS, LOCAL_REGION } from '../../src/local/aws-env';
import { LocalEvents, MAX_KEPT, type PublishedEvent, streamEvents } from '../../src/local/events';
import { Meter } from '../../src/local/meter';

let events: LocalEvents;
let meter: Meter;
let client: EventBridgeClient;

beforeAll(async () => {
  meter = new Meter();
  events = new LocalEvents({ region: LOCAL_REGION, accountId: LOCAL_ACCOUNT, meter, now: () => Date.parse('2026-11-30T10:00:00.000Z') });
  events.addBus('dtc-events');
  client = new EventBridgeClient({ endpoint: await events.listen(), region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
});

afterAll(async () => {
  client.destroy();
  await events.stop();
});

const decided = (txId: string, bus?: string) => ({ Source: 'dtc', DetailType: 'Transaction Decided', Detail: JSON.stringify({ txId, outcome: 'COMMIT' }), ...(bus ? { EventBusName: bus } : {}) });

describe('PutEvents', () => {
  it('accepts entries on the default bus and on a bus of the app, metering each as an event published and the call as a request', async () => {
    const before = meter.reading().eventsPublished;
    const calls = () => meter.snapshot().find((r) => r.service === 'events' && r.operation === 'PutEvents')?.count ?? 0;
    const callsBefore = calls();
    const out = await client.send(new PutEventsCommand({ Entries: [decided('tx-00000001'), decided('tx-00000002', 'dtc-events'), decided('tx-00000003', `arn:aws:events:${LOCAL_REGION}:${LOCAL_ACCOUNT}:event-bus/dtc-events`)] }));
    expect(out.FailedEntryCount).toBe(0);
    expect(out.Entries?.map((e) => e.EventId)).toEqual([expect.any(String), expect.any(String), expect.any(String)]);
    expect(meter.reading().eventsPublished - before).toBe(3);
    expect(calls() - callsBefore).toBe(1);
    const kept = events.recent().slice(-3);
    expect(kept.map((e) => [e.bus, (e.detail as { txId: string }).txId])).toEqual([
      ['default', 'tx-00000001'],
      ['dtc-events', 'tx-00000002'],
      ['dtc-events', 'tx-00000003'],
    ]);
    expect(kept[0]).toMatchObject({ version: '0', source: 'dtc', 'detail-type': 'Transaction Decided', account: LOCAL_ACCOUNT, region: LOCAL_REGION, time: '2026-11-30T10:00:00Z', resources: [] });
  });

  it('fails each bad entry on its own, as EventBridge does, and meters only the accepted ones', async () => {
    const before = meter.reading().eventsPublished;
    const out = await client.send(
      new PutEventsCommand({
        Entries: [
          decided('tx-00000004'),
          { Source: 'dtc', DetailType: 'Transaction Decided', Detail: '{not json' },
          { Source: 'dtc', DetailType: 'Transaction Decided', Detail: '[1]' },
          { Source: 'dtc', Detail: '{}' },
          decided('tx-00000005', 'no-such-bus'),
        ],
      }),
    );
    expect(out.FailedEntryCount).toBe(4);
    expect(out.Entries?.map((e) => e.ErrorCode ?? 'ok')).toEqual(['ok', 'MalformedDetail', 'MalformedDetail', 'InvalidArgument', 'InvalidArgument']);
    expect(out.Entries?.[4]?.ErrorMessage).toBe('Event bus no-such-bus does not exist.');
    expect(meter.reading().eventsPublished - before).toBe(1);
  });

  it('refuses a call of more than 10 entries, or over 256 KB, and publishes nothing of it', async () => {
    const before = events.recent().length;
    await expect(client.send(new PutEventsCommand({ Entries: Array.from({ length: 11 }, (_, i) => decided(`tx-1000000${i}`)) }))).rejects.toMatchObject({ name: 'ValidationException' });
    const big = { Source: 'dtc', DetailType: 'Transaction Decided', Detail: JSON.stringify({ pad: 'x'.repeat(100_000) }) };
    await expect(client.send(new PutEventsCommand({ Entries: [big, big, big] }))).rejects.toMatchObject({ name: 'ValidationException' });
    expect(events.recent()).toHaveLength(before);
  });

  it('keeps the most recent MAX_KEPT events', () => {
    const many = new LocalEvents({ region: LOCAL_REGION, accountId: LOCAL_ACCOUNT });
    for (let i = 0; i < MAX_KEPT + 5; i += 10) {
      const body = many.putEvents(JSON.stringify({ Entries: Array.from({ length: 10 }, (_, j) => decided(`tx-${String(i + j).padStart(8, '0')}`)) }));
      expect(body.status).toBe(200);
    }
    const kept = many.recent();
    expect(kept).toHaveLength(MAX_KEPT);
    expect((kept[kept.length - 1]!.detail as { txId: string }).txId).toBe(`tx-${String(MAX_KEPT + 9).padStart(8, '0')}`);
  });
});

describe('GET /events (Server-Sent Events)', () => {
  let server: http.Server;
  let url: string;
  beforeAll(async () => {
    server = http.createServer((req, res) => streamEvents(req, res, events));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** Reads `n` events from a stream opened with `headers`. */
  async function read(n: number, headers: Record<string, string> = {}, publish?: () => Promise<unknown>): Promise<PublishedEvent[]> {
    const controller = new AbortController();
    const res = await fetch(url, { headers, signal: controller.signal });
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const got: PublishedEvent[] = [];
    let buffer = '';
    let published = false;
    while (got.length < n) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (data) got.push(JSON.parse(data) as PublishedEvent);
      }
      if (!published && publish && got.length >= events.recent().length) {
        published = true;
        await publish();
      }
    }
    controller.abort();
    return got;
  }

  it('sends the kept events, then each new one as it is published; Last-Event-ID resumes after it', async () => {
    const kept = events.recent();
    const got = await read(kept.length + 1, {}, () => client.send(new PutEventsCommand({ Entries: [decided('tx-00000006')] })));
    expect(got.map((e) => e.id)).toEqual([...kept.map((e) => e.id), events.recent().at(-1)!.id]);
    expect((got.at(-1)!.detail as { txId: string }).txId).toBe('tx-00000006');
    const resumed = await read(1, { 'last-event-id': kept.at(-1)!.id });
    expect((resumed[0]!.detail as { txId: string }).txId).toBe('tx-00000006');
  });
});
