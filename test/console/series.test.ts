// The console's pure parts: throughput and latency per time bucket, counts by status, who is in
// doubt, where a dead letter goes back to, and the wait-for graph's edges as the page draws them.
import type { Message } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { countByStatus, percentile, seriesOf } from '../../src/console/series';
import { inDoubtOf, sourceOf } from '../../src/console/source';
import { type WaitForGraph, addEdge, waitEdges } from '../../src/core/deadlock';
import type { TxRecord } from '../../src/core/transaction';

const at = (ms: number) => new Date(Date.parse('2026-11-30T10:00:00.000Z') + ms).toISOString();

describe('percentile', () => {
  it('is the nearest rank', () => {
    expect(percentile([], 50)).toBeUndefined();
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([1, 2, 3, 4], 50)).toBe(2);
    expect(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 99)).toBe(99);
    expect(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 100)).toBe(100);
  });
});

describe('seriesOf', () => {
  it('counts starts and decisions per second in their buckets, with the latency percentiles of the decisions', () => {
    const records = [
      { createdAt: at(0), decidedAt: at(100) },
      { createdAt: at(1_000), decidedAt: at(1_300) },
      { createdAt: at(4_000), decidedAt: at(5_500) },
      { createdAt: at(6_000) },
      // Outside the window: neither started nor decided in it.
      { createdAt: at(-60_000), decidedAt: at(-59_000) },
    ];
    const s = seriesOf(records, Date.parse(at(9_999)), 10_000, 5_000);
    expect(s.t).toEqual([Date.parse(at(0)) / 1000, Date.parse(at(5_000)) / 1000]);
    expect(s.started).toEqual([3 / 5, 1 / 5]);
    expect(s.decided).toEqual([2 / 5, 1 / 5]);
    expect(s.p50).toEqual([100, 1_500]);
    expect(s.p99).toEqual([300, 1_500]);
  });

  it('answers null latencies where nothing was decided', () => {
    const s = seriesOf([{ createdAt: at(0) }], Date.parse(at(0)), 15_000, 5_000);
    expect(s.t).toHaveLength(3);
    expect(s.p50).toEqual([null, null, null]);
    expect(s.started).toEqual([0, 0, 0.2]);
  });
});

describe('countByStatus', () => {
  it('names every status', () => {
    expect(countByStatus([{ status: 'COMMITTED' }, { status: 'COMMITTED' }, { status: 'PREPARING' }])).toEqual({ PREPARING: 1, COMMITTING: 0, ABORTING: 0, COMMITTED: 2, ABORTED: 0 });
  });
});

describe('inDoubtOf', () => {
  const record = (over: Partial<TxRecord>): TxRecord =>
    ({
      pk: 'tx-00000001',
      txId: 'tx-00000001',
      status: 'COMMITTING',
      services: ['inventory', 'payment'],
      pending: {},
      votes: { inventory: { vote: 'YES', at: at(10) }, payment: { vote: 'YES', at: at(20) } },
      req: 2,
      ok: 2,
      acks: { inventory: { phase: 'COMMIT', at: at(40) } },
      timeouts: { prepareSeconds: 10, commitSeconds: 30 },
      createdAt: at(0),
      updatedAt: at(40),
      prepareDeadlineAt: Date.parse(at(10_000)),
      decision: 'COMMIT',
      decidedAt: at(30),
      lp: 'l1',
      requestHash: 'h',
      ...over,
    }) as TxRecord;

  it('lists each participant still owing its acknowledgement once supervision found it in doubt, and what is parked', () => {
    expect(inDoubtOf([record({})])).toEqual([]);
    expect(inDoubtOf([record({ inDoubtSince: at(90_000) })])).toEqual([{ txId: 'tx-00000001', status: 'COMMITTING', decision: 'COMMIT', participant: 'payment', since: at(90_000) }]);
    expect(inDoubtOf([record({ inDoubtSince: at(90_000), parkedWith: 'payment' })])).toEqual([
      { txId: 'tx-00000001', status: 'COMMITTING', decision: 'COMMIT', participant: 'payment', since: at(90_000), parkedWith: 'payment' },
    ]);
    expect(inDoubtOf([record({ parkedWith: 'payment' })])).toEqual([{ txId: 'tx-00000001', status: 'COMMITTING', decision: 'COMMIT', participant: 'payment', parkedWith: 'payment' }]);
  });
});

describe('sourceOf', () => {
  const byArn = new Map([['arn:aws:sqs:us-east-1:1:dtc-a-replies', 'https://q/dtc-a-replies']]);
  const replies = { a: 'https://q/dtc-a-replies', b: 'https://q/dtc-b-replies' };
  const both = Object.values(replies);

  it('takes the source SQS names, else the only source, else the reply queue of the participant the message names', () => {
    const named: Message = { Attributes: { DeadLetterQueueSourceArn: 'arn:aws:sqs:us-east-1:1:dtc-a-replies' }, Body: '{"participant":"b"}' };
    expect(sourceOf(named, byArn, both, replies)).toBe('https://q/dtc-a-replies');
    expect(sourceOf({ Body: 'x' }, byArn, ['https://q/dtc-a-requests'], replies)).toBe('https://q/dtc-a-requests');
    expect(sourceOf({ Body: 'x', MessageAttributes: { 'dtc-participant': { DataType: 'String', StringValue: 'b' } } }, byArn, both, replies)).toBe('https://q/dtc-b-replies');
    expect(sourceOf({ Body: '{"v":1,"type":"VOTE","participant":"a"}' }, byArn, both, replies)).toBe('https://q/dtc-a-replies');
  });

  it('finds none for a message that names nobody, or a queue that is not a source of this DLQ', () => {
    expect(sourceOf({ Body: 'not json' }, byArn, both, replies)).toBeUndefined();
    expect(sourceOf({ Body: '{"participant":"c"}' }, byArn, both, replies)).toBeUndefined();
    expect(sourceOf({ Body: '{"participant":"b"}' }, byArn, [replies.a], replies)).toBe(replies.a);
    expect(sourceOf({ Body: '{"participant":"b"}' }, byArn, [replies.a, 'https://q/other'], replies)).toBeUndefined();
  });
});

describe('waitEdges', () => {
  it('lists each edge of the wait-for graph once, with the resource behind it, in the order found', () => {
    const graph: WaitForGraph = { adjacency: new Map(), resources: new Map() };
    addEdge(graph, 'tx#a', 'tx#b', 'r1');
    addEdge(graph, 'owner#ops', 'tx#a', 'r2');
    addEdge(graph, 'tx#a', 'tx#b', 'r3');
    expect(waitEdges(graph)).toEqual([
      { waiter: 'tx#a', holder: 'tx#b', resource: 'r1' },
      { waiter: 'owner#ops', holder: 'tx#a', resource: 'r2' },
    ]);
  });
});
