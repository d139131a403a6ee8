// The coordinator's use cases against the real log store on dynalite, with the queues and the
// workflow recorded: which messages go out, and when the execution is woken, for each transition.
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { STATUS_PHASE } from '../../src/core/transaction';
import type { ParticipantQueues } from '../../src/aws/queues';
import type { Workflow } from '../../src/aws/workflow';
import { Coordinator } from '../../src/coordinator';
import type { ParticipantMessage } from '../../src/core/messages';
import { startLocalAws, type LocalAws } from '../support/aws';
import { coordinatorConfig } from '../support/fixtures';

let aws: LocalAws;
let txTable: string;
let client: DynamoDBClient;
let log: TxLog;
let sent: ParticipantMessage[];
let signals: { token: string; output: unknown }[];
let started: { name: string; input: unknown }[];
let usedTokens: Set<string>;
let clock: number;
let ids: number;
let coordinator: Coordinator;

const services = ['inventory', 'payment', 'shipping'];

beforeAll(async () => {
  aws = await startLocalAws({ tables: ['log'] });
  client = aws.dynamodb;
  txTable = aws.tables.log;
  log = new TxLog(documentClient(client), txTable);
});

afterAll(async () => {
  await aws?.stop();
});

beforeEach(() => {
  sent = [];
  signals = [];
  started = [];
  usedTokens = new Set();
  clock = Date.parse('2026-11-27T12:00:00Z');
  const queues = { send: async (m: ParticipantMessage[]) => void sent.push(...m), services } as unknown as ParticipantQueues;
  // Like Step Functions: a token completes its task once; later uses answer false (TaskDoesNotExist).
  const workflow = {
    start: async (_arn: string, name: string, input: unknown) => void started.push({ name, input }),
    signal: async (token: string, output: unknown) => {
      if (usedTokens.has(token)) return false;
      usedTokens.add(token);
      signals.push({ token, output });
      return true;
    },
  } as unknown as Workflow;
  coordinator = new Coordinator({
    config: coordinatorConfig(txTable, services),
    log,
    queues,
    workflow,
    now: () => clock,
    newId: () => `tx-${String(++ids).padStart(8, '0')}-${clock}`,
  });
});
ids = 0;

async function begin(): Promise<string> {
  const out = await coordinator.start({ participants: services.map((service) => ({ service, operation: { n: service } })) });
  if (out.kind !== 'started') throw new Error(out.kind);
  return out.txId;
}

const vote = (txId: string, participant: string, v: 'YES' | 'NO' | 'READ_ONLY', reason?: string) =>
  coordinator.onReply({ v: 1, type: 'VOTE', txId, participant, vote: v, ...(reason ? { reason } : {}) });
const ack = (txId: string, participant: string, phase: 'COMMIT' | 'ABORT') => coordinator.onReply({ v: 1, type: 'ACK', txId, participant, phase });

/** What the state machine's Decide step writes (the same write, from the log's table). */
async function decide(txId: string, status: 'COMMITTING' | 'ABORTING') {
  await log.decide(txId, { status, outcome: STATUS_PHASE[status], reason: 'decided by the test' }, new Date(clock).toISOString());
}

describe('start', () => {
  it('writes PREPARING and starts the execution named after the transaction', async () => {
    const txId = await begin();
    expect((await log.get(txId))?.status).toBe('PREPARING');
    expect(started).toEqual([{ name: txId, input: { txId, timeouts: { prepareSeconds: 10, commitSeconds: 30 } } }]);
  });
});

describe('phase one', () => {
  it('sends PREPARE with each operation, and one callback when the last YES lands', async () => {
    const txId = await begin();
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't1' });
    expect(sent.map((m) => [m.type, m.participant, m.operation, m.attempt])).toEqual(services.map((s) => ['PREPARE', s, { n: s }, 1]));
    await vote(txId, 'inventory', 'YES');
    await vote(txId, 'payment', 'READ_ONLY');
    expect(signals).toEqual([]);
    await vote(txId, 'shipping', 'YES');
    expect(signals).toEqual([{ token: 't1', output: { outcome: 'COMMIT', status: 'COMMITTING', reason: 'every participant voted YES' } }]);
  });

  it('wakes the execution on the first NO, once', async () => {
    const txId = await begin();
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't1' });
    await vote(txId, 'payment', 'NO', 'insufficient funds');
    await vote(txId, 'inventory', 'NO');
    await vote(txId, 'shipping', 'YES');
    expect(signals).toEqual([{ token: 't1', output: { outcome: 'ABORT', status: 'ABORTING', reason: 'payment voted NO: insufficient funds' } }]);
  });

  it('a retried task re-sends only to those that have not voted, with the next attempt number', async () => {
    const txId = await begin();
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't1' });
    await vote(txId, 'inventory', 'YES');
    sent = [];
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't2' });
    expect(sent.map((m) => [m.participant, m.attempt])).toEqual([
      ['payment', 2],
      ['shipping', 2],
    ]);
  });

  it('a retried task whose votes are already complete completes itself', async () => {
    const txId = await begin();
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't1' });
    for (const s of services) await vote(txId, s, 'YES');
    sent = [];
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't2' });
    expect(sent).toEqual([]);
    expect(signals.map((s) => s.token)).toEqual(['t1', 't2']);
  });

  it('a duplicate of the deciding vote re-signals (in case the first signal was lost); the token makes it harmless', async () => {
    const txId = await begin();
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't1' });
    for (const s of services) await vote(txId, s, 'YES');
    await vote(txId, 'shipping', 'YES');
    expect(signals).toHaveLength(1);
    expect((await log.get(txId))?.votes.shipping?.vote).toBe('YES');
  });

  it('a late YES after an abort decision is answered with ABORT; a vote for an unknown transaction too', async () => {
    const txId = await begin();
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't1' });
    await decide(txId, 'ABORTING');
    sent = [];
    await vote(txId, 'inventory', 'YES');
    expect(sent.map((m) => [m.type, m.participant])).toEqual([['ABORT', 'inventory']]);
    expect((await log.get(txId))?.votes.inventory).toBeUndefined();
    sent = [];
    await vote('tx-unknown-0001', 'payment', 'YES');
    expect(sent.map((m) => [m.type, m.participant, m.txId])).toEqual([['ABORT', 'payment', 'tx-unknown-0001']]);
  });
});

describe('phase two', () => {
  it('COMMIT goes to YES voters only and the last ACK finalizes with a TTL', async () => {
    const txId = await begin();
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't1' });
    await vote(txId, 'inventory', 'YES');
    await vote(txId, 'payment', 'READ_ONLY');
    await vote(txId, 'shipping', 'YES');
    await decide(txId, 'COMMITTING');
    sent = [];
    await coordinator.dispatch({ txId, phase: 'COMMIT', taskToken: 't2' });
    expect(sent.map((m) => [m.type, m.participant])).toEqual([
      ['COMMIT', 'inventory'],
      ['COMMIT', 'shipping'],
    ]);
    await ack(txId, 'inventory', 'COMMIT');
    await ack(txId, 'inventory', 'COMMIT');
    expect(signals.map((s) => s.token)).toEqual(['t1']);
    await ack(txId, 'shipping', 'COMMIT');
    expect(signals[1]).toEqual({ token: 't2', output: { from: 'COMMITTING', final: 'COMMITTED', expiresAt: Math.floor(clock / 1000) + 30 * 86_400 } });
  });

  it('Finalize makes the status final once; a repeat only reads; nothing declared, nothing released', async () => {
    const txId = await begin();
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't1' });
    for (const s of services) await vote(txId, s, 'YES');
    await decide(txId, 'COMMITTING');
    const result = { from: 'COMMITTING' as const, final: 'COMMITTED' as const, expiresAt: Math.floor(clock / 1000) + 30 * 86_400 };
    expect(await coordinator.finalize(txId, result)).toEqual({ finalized: true, status: 'COMMITTED', released: [] });
    const record = await log.get(txId);
    expect(record).toMatchObject({ status: 'COMMITTED', expiresAt: result.expiresAt, finishedAt: new Date(clock).toISOString() });
    expect(record?.openPk).toBeUndefined();
    expect(record?.taskToken).toBeUndefined();
    clock += 5_000;
    expect(await coordinator.finalize(txId, result)).toEqual({ finalized: false, status: 'COMMITTED', released: [] });
    expect((await log.get(txId))?.finishedAt).toBe(record?.finishedAt);
    // A result for the other phase on an open record is a bug, and says so.
    const other = await begin();
    await decide(other, 'ABORTING');
    await expect(coordinator.finalize(other, result)).rejects.toThrow(/is ABORTING, not COMMITTING/);
  });

  it('an ACK for the wrong phase is not recorded', async () => {
    const txId = await begin();
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't1' });
    for (const s of services) await vote(txId, s, 'YES');
    await decide(txId, 'COMMITTING');
    await ack(txId, 'inventory', 'ABORT');
    expect((await log.get(txId))?.acks.inventory).toBeUndefined();
  });

  it('ABORT goes to YES voters and to those that never voted, and waits for both (one that never voted may have prepared)', async () => {
    const txId = await begin();
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't1' });
    await vote(txId, 'inventory', 'YES');
    await vote(txId, 'payment', 'NO');
    await decide(txId, 'ABORTING');
    sent = [];
    await coordinator.dispatch({ txId, phase: 'ABORT', taskToken: 't2' });
    expect(sent.map((m) => [m.type, m.participant])).toEqual([
      ['ABORT', 'inventory'],
      ['ABORT', 'shipping'],
    ]);
    const before = signals.length;
    await ack(txId, 'inventory', 'ABORT');
    expect(signals).toHaveLength(before);
    await ack(txId, 'shipping', 'ABORT');
    expect(signals.at(-1)).toMatchObject({ token: 't2', output: { from: 'ABORTING', final: 'ABORTED' } });
  });

  it('dispatch for a phase the record has moved past answers with where it is', async () => {
    const txId = await begin();
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't1' });
    await decide(txId, 'ABORTING');
    await coordinator.dispatch({ txId, phase: 'PREPARE', taskToken: 't2' });
    expect(signals.at(-1)).toMatchObject({ token: 't2', output: { outcome: 'ABORT', status: 'ABORTING' } });
  });
});
