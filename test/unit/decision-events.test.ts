// Decision events (docs/events.md): every decider takes exactly one `Transaction Decided` after the
// write that decided (the last YES, a NO, the deadline, an abort request), whoever finishes takes one
// `Transaction Finished`, and supervision one `Participant In Doubt` per participant it marks; a
// duplicate reply or a lost race takes none. The EventBridge adapter batches ten to a PutEvents call
// when flushed, counts what was published and what failed, and never throws.
import type { PutEventsCommand, PutEventsCommandOutput } from '@aws-sdk/client-eventbridge';
import { beforeAll, describe, expect, it } from 'vitest';
import { EVENT_SOURCE, EventBridgeDecisionEvents, MAX_PENDING_EVENTS } from '../../src/aws/events';
import { Coordinator } from '../../src/coordinator';
import type { DecisionEvent } from '../../src/core/ports';
import { workflowDefinition } from '../../src/memory/definition';
import { METRIC, type MetricName, type MetricsPort } from '../../src/metrics';
import { coordinatorConfig } from '../support/fixtures';
import { SERVICES, T0, iso, memoryStack, type MemoryStack } from './memory-stack';

const [INVENTORY, PAYMENT, SHIPPING, ORDER] = SERVICES as [string, string, string, string];

beforeAll(() => {
  workflowDefinition();
}, 120_000);

/** What reached the bus once the invocation's events are flushed. */
async function published(s: MemoryStack): Promise<DecisionEvent[]> {
  await s.events.flush();
  return s.events.published;
}

const types = (events: DecisionEvent[]) => events.map((e) => `${e.detailType}:${e.detail.txId}`);

describe('the coordinator takes decision events where it decides', () => {
  it('one Transaction Decided from the last YES, none from a duplicate; with finishEvents, one Transaction Finished from the last ACK, none from a duplicate', async () => {
    const s = memoryStack({ supervise: false, finishEvents: true });
    const txId = await s.start(s.body([INVENTORY, PAYMENT]));
    await s.vote(txId, INVENTORY, 'YES');
    expect(await published(s)).toEqual([]);
    await s.timers.advanceTo(T0 + 1_500);
    await s.vote(txId, PAYMENT, 'YES');
    await s.vote(txId, PAYMENT, 'YES');
    expect(await published(s)).toEqual([
      {
        detailType: 'Transaction Decided',
        detail: { v: 1, txId, outcome: 'COMMIT', reason: 'every participant voted YES', decidedAt: iso(T0 + 1_500), participants: [INVENTORY, PAYMENT] },
      },
    ]);
    await s.ack(txId, INVENTORY, 'COMMIT');
    await s.timers.advanceTo(T0 + 2_000);
    await s.ack(txId, PAYMENT, 'COMMIT');
    await s.ack(txId, PAYMENT, 'COMMIT');
    expect(s.record(txId).status).toBe('COMMITTED');
    expect((await published(s)).slice(1)).toEqual([{ detailType: 'Transaction Finished', detail: { v: 1, txId, outcome: 'COMMIT', finishedAt: iso(T0 + 2_000) } }]);
  });

  it('publishes no Transaction Finished unless asked to (finishEvents): a commit takes one event, its decision', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([INVENTORY, PAYMENT]));
    for (const p of [INVENTORY, PAYMENT]) await s.vote(txId, p, 'YES');
    for (const p of [INVENTORY, PAYMENT]) await s.ack(txId, p, 'COMMIT');
    expect(s.record(txId).status).toBe('COMMITTED');
    expect(types(await published(s))).toEqual([`Transaction Decided:${txId}`]);
  });

  it('a NO decides ABORT with the voter\'s reason; a transaction nobody else prepared finishes at once', async () => {
    const s = memoryStack({ supervise: false, finishEvents: true });
    const txId = await s.start(s.body([INVENTORY, PAYMENT]));
    await s.vote(txId, PAYMENT, 'NO', 'card declined');
    const events = await published(s);
    expect(types(events)).toEqual([`Transaction Decided:${txId}`]);
    expect(events[0]!.detail).toMatchObject({ outcome: 'ABORT', reason: `${PAYMENT} voted NO: card declined` });
    await s.ack(txId, INVENTORY, 'ABORT');
    expect(types(await published(s))).toEqual([`Transaction Decided:${txId}`, `Transaction Finished:${txId}`]);
  });

  it('an abort request decides once; a second one, or one after every YES, takes no abort event', async () => {
    const s = memoryStack({ supervise: false });
    const a = await s.start(s.body([INVENTORY, SHIPPING]));
    expect(await s.coordinator.abort(a, 'aborted on request')).toMatchObject({ kind: 'aborted', decidedNow: true });
    expect(await s.coordinator.abort(a, 'aborted on request')).toMatchObject({ kind: 'aborted', decidedNow: false });
    const b = await s.start(s.body([ORDER]));
    await s.log.recordYes(b, ORDER, { vote: 'YES', at: iso(T0) }, T0);
    // Every YES is in (its decider crashed): the abort request commits it instead, and says so.
    expect(await s.coordinator.abort(b, 'aborted on request')).toMatchObject({ kind: 'committed' });
    const events = await published(s);
    expect(events.map((e) => [e.detailType, e.detail.txId, 'outcome' in e.detail ? e.detail.outcome : undefined])).toEqual([
      ['Transaction Decided', a, 'ABORT'],
      ['Transaction Decided', b, 'COMMIT'],
    ]);
    expect(events[0]!.detail).toMatchObject({ reason: 'aborted on request' });
  });

  it('supervision: the deadline abort, and each participant it marks in doubt, once', async () => {
    const s = memoryStack();
    const late = await s.start(s.body([INVENTORY], { prepareSeconds: 5, commitSeconds: 30 }));
    await s.timers.advanceTo(T0 + 5_000);
    expect(types(await published(s))).toEqual([`Transaction Decided:${late}`]);
    expect(s.events.published[0]!.detail).toMatchObject({ outcome: 'ABORT', reason: 'prepare deadline passed', decidedAt: iso(T0 + 5_000) });

    const txId = await s.start(s.body([INVENTORY, PAYMENT], { prepareSeconds: 10, commitSeconds: 2 }));
    const decidedAt = s.now();
    for (const p of [INVENTORY, PAYMENT]) await s.vote(txId, p, 'YES');
    await s.ack(txId, INVENTORY, 'COMMIT');
    await s.timers.advanceTo(decidedAt + 35_000);
    const inDoubt = (await published(s)).filter((e) => e.detailType === 'Participant In Doubt');
    expect(inDoubt).toEqual([{ detailType: 'Participant In Doubt', detail: { v: 1, txId, participant: PAYMENT, outcome: 'COMMIT', since: s.record(txId).inDoubtSince } }]);
    expect(s.record(txId).inDoubtSince).toBe(iso(decidedAt + 6_000));
  });

  it("an operator's release of the last participant owed an acknowledgement finishes the transaction: one Transaction Finished", async () => {
    const s = memoryStack({ supervise: false, finishEvents: true });
    const txId = await s.start(s.body([INVENTORY, SHIPPING]));
    for (const p of [INVENTORY, SHIPPING]) await s.vote(txId, p, 'YES');
    await s.ack(txId, INVENTORY, 'COMMIT');
    expect(await s.coordinator.release(txId, SHIPPING, 'ops@example.com', 'shipping is retired')).toMatchObject({ kind: 'released', record: { status: 'COMMITTED' } });
    expect(await s.coordinator.release(txId, SHIPPING, 'ops@example.com', 'shipping is retired')).toMatchObject({ kind: 'refused' });
    expect(types(await published(s))).toEqual([`Transaction Decided:${txId}`, `Transaction Finished:${txId}`]);
  });

  it('a bus that fails changes no decision and no phase two, and is counted', async () => {
    const s = memoryStack({ supervise: false });
    const counted = recordingMetrics();
    const bus = new EventBridgeDecisionEvents({ send: () => Promise.reject(new Error('EventBridge is down')) }, 'dtc-events', counted.port, { warn: () => undefined });
    const coordinator = new Coordinator({ config: { ...coordinatorConfig('log', SERVICES), stateMachineArn: s.stateMachineArn }, log: s.log, queues: s.queues, workflow: s.recording, events: bus, now: s.now, newId: () => 'tx-failing-bus' });
    const start = await coordinator.start(s.body([INVENTORY]));
    expect(start).toMatchObject({ kind: 'started', txId: 'tx-failing-bus' });
    s.take(INVENTORY);
    await coordinator.onReply({ v: 1, type: 'VOTE', txId: 'tx-failing-bus', participant: INVENTORY, vote: 'YES' });
    expect(s.record('tx-failing-bus')).toMatchObject({ status: 'COMMITTING', decision: 'COMMIT' });
    expect(s.take(INVENTORY).map((m) => m.type)).toEqual(['COMMIT']);
    await expect(bus.flush()).resolves.toBeUndefined();
    expect(counted.totals()).toEqual({ [METRIC.DecisionEventsFailed]: 1 });
  });
});

function recordingMetrics(): { port: MetricsPort; totals(): Partial<Record<MetricName, number>> } {
  const totals: Partial<Record<MetricName, number>> = {};
  return {
    port: { count: (name, value = 1) => void (totals[name] = (totals[name] ?? 0) + value), milliseconds: () => undefined },
    totals: () => totals,
  };
}

const event = (i: number): DecisionEvent => ({ detailType: 'Transaction Finished', detail: { v: 1, txId: `tx-${String(i).padStart(8, '0')}`, outcome: 'COMMIT', finishedAt: iso(T0 + i) } });

describe('EventBridgeDecisionEvents', () => {
  const bus = (answer: (command: PutEventsCommand) => Promise<Partial<PutEventsCommandOutput>>) => {
    const calls: PutEventsCommand[] = [];
    const warnings: string[] = [];
    const metrics = recordingMetrics();
    const port = new EventBridgeDecisionEvents(
      { send: ((command: PutEventsCommand) => (calls.push(command), answer(command))) as never },
      'dtc-events',
      metrics.port,
      { warn: (message) => void warnings.push(message) },
    );
    return { port, calls, warnings, metrics };
  };

  it('sends nothing until flushed, then ten entries to a PutEvents call, on the named bus, source dtc', async () => {
    const b = bus(async () => ({ FailedEntryCount: 0, Entries: [] }));
    for (let i = 0; i < 23; i++) b.port.publish(event(i));
    expect(b.calls).toEqual([]);
    await b.port.flush();
    expect(b.calls.map((c) => c.input.Entries?.length)).toEqual([10, 10, 3]);
    const first = b.calls[0]!.input.Entries![0]!;
    expect(first).toEqual({
      EventBusName: 'dtc-events',
      Source: EVENT_SOURCE,
      DetailType: 'Transaction Finished',
      Detail: JSON.stringify(event(0).detail),
      Time: new Date(T0),
    });
    expect(b.metrics.totals()).toEqual({ [METRIC.DecisionEventsPublished]: 23 });
    await b.port.flush();
    expect(b.calls).toHaveLength(3);
  });

  it('counts entries EventBridge refused as failed, and logs why', async () => {
    const b = bus(async (c) => ({ FailedEntryCount: 2, Entries: c.input.Entries!.map((_, i) => (i < 2 ? { ErrorCode: 'ThrottlingException', ErrorMessage: 'slow down' } : { EventId: `e${i}` })) }));
    for (let i = 0; i < 5; i++) b.port.publish(event(i));
    await b.port.flush();
    expect(b.metrics.totals()).toEqual({ [METRIC.DecisionEventsPublished]: 3, [METRIC.DecisionEventsFailed]: 2 });
    expect(b.warnings).toEqual(['decision events refused by EventBridge']);
  });

  it('counts a failed call as failed entries and never throws', async () => {
    const b = bus(() => Promise.reject(Object.assign(new Error('denied'), { name: 'AccessDeniedException' })));
    for (let i = 0; i < 12; i++) b.port.publish(event(i));
    await expect(b.port.flush()).resolves.toBeUndefined();
    expect(b.metrics.totals()).toEqual({ [METRIC.DecisionEventsFailed]: 12 });
    expect(b.warnings).toEqual(['decision events not published', 'decision events not published']);
  });

  it(`keeps at most ${MAX_PENDING_EVENTS} events per invocation; the rest are counted as failed`, async () => {
    const b = bus(async () => ({ FailedEntryCount: 0 }));
    for (let i = 0; i < MAX_PENDING_EVENTS + 3; i++) b.port.publish(event(i));
    expect(b.metrics.totals()).toEqual({ [METRIC.DecisionEventsFailed]: 3 });
    await b.port.flush();
    expect(b.calls).toHaveLength(MAX_PENDING_EVENTS / 10);
    expect(b.metrics.totals()).toEqual({ [METRIC.DecisionEventsFailed]: 3, [METRIC.DecisionEventsPublished]: MAX_PENDING_EVENTS });
  });
});
