// Business metrics: the coordinator counts each event once, where it happens (duplicates and
// retries are not counted again); the Lambda adapter writes them as EMF in namespace Dtc with the
// `service` dimension the alarms read, and stays silent when nothing was recorded.
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { Coordinator } from '../../src/coordinator';
import type { ParticipantQueuesPort, WorkflowPort } from '../../src/core/ports';
import { startLocalAws, type LocalAws } from '../support/aws';
import { coordinatorConfig } from '../support/fixtures';
import type { MetricName, MetricsPort } from '../../src/metrics';

let aws: LocalAws;
let txTable: string;
let client: DynamoDBClient;
let log: TxLog;

beforeAll(async () => {
  aws = await startLocalAws({ tables: ['log'] });
  client = aws.dynamodb;
  txTable = aws.tables.log;
  log = new TxLog(documentClient(client), txTable);
});

afterAll(async () => {
  await aws?.stop();
});

class RecordingMetrics implements MetricsPort {
  readonly counts = new Map<MetricName, number>();
  readonly latencies: number[] = [];
  count(name: MetricName, value = 1): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + value);
  }
  milliseconds(name: MetricName, value: number): void {
    if (name === 'DecisionLatency') this.latencies.push(value);
  }
}

const services = ['inventory', 'payment', 'shipping'];
const T0 = Date.parse('2026-11-27T12:00:00Z');
let ids = 0;

function coordinatorWith(metrics: MetricsPort, clock: { now: number }) {
  const queues: ParticipantQueuesPort = { send: async () => undefined, deadLetter: async () => [], deadLetterReply: async () => undefined };
  const workflow: WorkflowPort = { start: async () => 'started', describe: async () => 'RUNNING' };
  return new Coordinator({
    config: coordinatorConfig(txTable, services),
    log,
    queues,
    workflow,
    metrics,
    now: () => clock.now,
    newId: () => `tx-metrics-${++ids}`,
  });
}

describe('the coordinator', () => {
  it('counts a transaction, its votes, its decision and latency, and its acks once each', async () => {
    const metrics = new RecordingMetrics();
    const clock = { now: T0 };
    const c = coordinatorWith(metrics, clock);
    const body = { participants: services.map((service) => ({ service })) };
    const started = await c.start(body, 'key-1');
    if (started.kind !== 'started') throw new Error(started.kind);
    const { txId } = started;
    await c.start(body, 'key-1'); // an idempotent replay: the same transaction, PREPARE re-sent to the three
    for (const participant of services.slice(0, 2)) await c.onReply({ v: 1, type: 'VOTE', txId, participant, vote: 'YES' });
    await c.onReply({ v: 1, type: 'VOTE', txId, participant: 'inventory', vote: 'YES' }); // duplicate, before the decision: sends nothing
    clock.now = T0 + 1234;
    await c.onReply({ v: 1, type: 'VOTE', txId, participant: 'shipping', vote: 'YES' }); // the last vote decides, and sends COMMIT to three

    clock.now = T0 + 2000;
    await c.onReply({ v: 1, type: 'VOTE', txId, participant: 'shipping', vote: 'YES' }); // redelivered: re-drives COMMIT to three, not a second decision
    for (const participant of services) await c.onReply({ v: 1, type: 'ACK', txId, participant, phase: 'COMMIT' });
    await c.onReply({ v: 1, type: 'ACK', txId, participant: 'payment', phase: 'COMMIT' }); // duplicate, after the finish

    expect(Object.fromEntries(metrics.counts)).toEqual({
      TransactionsStarted: 1,
      VotesRecorded: 3,
      TransactionsCommitted: 1,
      AcksRecorded: 3,
      // PREPARE to three twice (start and replay), COMMIT to three at the decision and again on the redelivery.
      MessagesSent: 12,
    });
    expect(metrics.latencies).toEqual([1234]);
  });

  it('counts an abort decision as TransactionsAborted, whoever decides', async () => {
    const metrics = new RecordingMetrics();
    const clock = { now: T0 };
    const c = coordinatorWith(metrics, clock);
    const first = await c.start({ participants: [{ service: 'inventory' }] });
    const second = await c.start({ participants: [{ service: 'inventory' }, { service: 'payment' }] });
    if (first.kind !== 'started' || second.kind !== 'started') throw new Error('not started');
    clock.now = T0 + 10_000;
    await c.abort(first.txId, 'aborted on request');
    await c.abort(first.txId, 'aborted on request'); // already aborted: not counted again
    await c.onReply({ v: 1, type: 'VOTE', txId: second.txId, participant: 'payment', vote: 'NO' });
    expect(metrics.counts.get('TransactionsAborted')).toBe(2);
    expect(metrics.counts.get('TransactionsCommitted')).toBeUndefined();
    expect(metrics.latencies).toEqual([10_000, 10_000]);
  });
});

describe('the Lambda adapter (Powertools)', () => {
  async function freshTelemetry(env: Record<string, string>) {
    vi.resetModules();
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      return await import('../../src/aws/telemetry');
    } finally {
      for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k];
      Object.assign(process.env, saved);
    }
  }

  function capture(): { lines: () => Record<string, any>[]; restore: () => void } {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out.push(String(chunk));
      return true;
    });
    return {
      lines: () => out.join('').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, any>),
      restore: () => spy.mockRestore(),
    };
  }

  it('writes EMF in namespace Dtc, dimension service, when an invocation recorded something', async () => {
    const t = await freshTelemetry({ POWERTOOLS_METRICS_DISABLED: 'false', POWERTOOLS_METRICS_NAMESPACE: 'Dtc', POWERTOOLS_SERVICE_NAME: 'dtc' });
    const handler = t.withTelemetry('test', async (n: number) => {
      t.metricsPort.count('VotesRecorded', n);
      t.metricsPort.milliseconds('DecisionLatency', 42);
      return n * 2;
    });
    const out = capture();
    try {
      expect(await handler(3)).toBe(6);
    } finally {
      out.restore();
    }
    const [emf] = out.lines();
    expect(emf?._aws.CloudWatchMetrics).toEqual([
      {
        Namespace: 'Dtc',
        Dimensions: [['service']],
        Metrics: expect.arrayContaining([
          { Name: 'VotesRecorded', Unit: 'Count' },
          { Name: 'DecisionLatency', Unit: 'Milliseconds' },
        ]),
      },
    ]);
    expect(emf).toMatchObject({ service: 'dtc', VotesRecorded: 3, DecisionLatency: 42 });
  });

  it('writes nothing for an invocation that recorded nothing, nor when disabled (the local stack)', async () => {
    const on = await freshTelemetry({ POWERTOOLS_METRICS_DISABLED: 'false' });
    const off = await freshTelemetry({ POWERTOOLS_METRICS_DISABLED: 'true' });
    const out = capture();
    try {
      await on.withTelemetry('idle', async () => undefined)(undefined);
      await off.withTelemetry('busy', async () => off.metricsPort.count('VotesRecorded'))(undefined);
    } finally {
      out.restore();
    }
    expect(out.lines()).toEqual([]);
  });

  it('flushes even when the handler throws, and rethrows', async () => {
    const t = await freshTelemetry({ POWERTOOLS_METRICS_DISABLED: 'false' });
    const out = capture();
    try {
      await expect(
        t.withTelemetry('failing', async () => {
          t.metricsPort.count('MessagesSent', 2);
          throw new Error('boom');
        })(undefined),
      ).rejects.toThrow('boom');
    } finally {
      out.restore();
    }
    expect(out.lines()[0]).toMatchObject({ MessagesSent: 2 });
  });

  it('traces only inside Lambda and only when not switched off', async () => {
    const t = await freshTelemetry({});
    expect(t.tracingWanted({})).toBe(false);
    expect(t.tracingWanted({ AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x' })).toBe(true);
    expect(t.tracingWanted({ AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x', POWERTOOLS_TRACE_ENABLED: 'false' })).toBe(false);
    // Outside Lambda the X-Ray SDK is never loaded, and clients pass through untouched.
    expect(t.tracer).toBeUndefined();
    const client = { send: () => undefined };
    expect(t.traced(client)).toBe(client);
  });
});
