// The coordinator's use cases against the real log store on dynalite, with the queues and the
// workflow recorded: which messages go out for each transition, in which order the start writes,
// supervises and sends, and that the decision needs no Step Functions call (the last vote decides).
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { Coordinator } from '../../src/coordinator';
import type { ParticipantMessage } from '../../src/core/messages';
import type { ParticipantQueuesPort, WorkflowPort } from '../../src/core/ports';
import { idSlot, supervisionGroup, DEFAULT_SUPERVISION } from '../../src/core/transaction';
import { startLocalAws, type LocalAws } from '../support/aws';
import { coordinatorConfig } from '../support/fixtures';

let aws: LocalAws;
let txTable: string;
let client: DynamoDBClient;
let log: TxLog;
let sent: ParticipantMessage[];
/** Every call to the queues and the workflow, in order, and every write the coordinator made through the log. */
let events: string[];
let started: { name: string; input: unknown }[];
let clock: number;
let ids = 0;
let coordinator: Coordinator;

const services = ['inventory', 'payment', 'shipping'];
const config = () => coordinatorConfig(txTable, services);

beforeAll(async () => {
  aws = await startLocalAws({ tables: ['log'] });
  client = aws.dynamodb;
  txTable = aws.tables.log;
  log = new TxLog(documentClient(client), txTable);
});

afterAll(async () => {
  await aws?.stop();
});

/** The log, with every write it takes recorded in `events` (reads are not). */
function recordedLog(): TxLog {
  return new Proxy(log, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function' || ['get', 'getMany', 'getOps', 'readGroup', 'list', 'openMembers', 'openGroups'].includes(String(prop))) {
        return typeof value === 'function' ? value.bind(target) : value;
      }
      return (...args: unknown[]) => {
        events.push(`log.${String(prop)}`);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

beforeEach(() => {
  sent = [];
  events = [];
  started = [];
  clock = Date.parse('2026-11-27T12:00:00Z') + ids * 60_000;
  const queues: ParticipantQueuesPort = {
    send: async (m) => {
      events.push(`send ${m.map((x) => `${x.type}:${x.participant}`).join(',')}`);
      sent.push(...m);
    },
    deadLetter: async () => [],
    deadLetterReply: async () => undefined,
  };
  // Like Step Functions: the same name and input while running is the same execution.
  const running = new Map<string, string>();
  const workflow: WorkflowPort = {
    start: async (_arn, name, input) => {
      events.push(`workflow.start ${name}`);
      const json = JSON.stringify(input);
      if (running.has(name)) return running.get(name) === json ? 'started' : 'exists';
      running.set(name, json);
      started.push({ name, input });
      return 'started';
    },
    describe: async () => 'RUNNING',
  };
  coordinator = new Coordinator({
    config: config(),
    log: recordedLog(),
    queues,
    workflow,
    now: () => clock,
    newId: () => `tx-${String(++ids).padStart(8, '0')}-${clock}`,
  });
});

async function begin(key?: string): Promise<string> {
  const out = await coordinator.start({ participants: services.map((service) => ({ service, operation: { n: service } })) }, key);
  if (out.kind !== 'started') throw new Error(out.kind);
  return out.txId;
}

const vote = (txId: string, participant: string, v: 'YES' | 'NO' | 'READ_ONLY', reason?: string) =>
  coordinator.onReply({ v: 1, type: 'VOTE', txId, participant, vote: v, ...(reason ? { reason } : {}) });
const ack = (txId: string, participant: string, phase: 'COMMIT' | 'ABORT') => coordinator.onReply({ v: 1, type: 'ACK', txId, participant, phase });
const sentAs = () => sent.map((m) => [m.type, m.participant]);

describe('start', () => {
  it('claims the key, writes the operations and the record, makes sure its group is supervised, then sends PREPARE', async () => {
    const txId = await begin('key-start-1');
    const record = await log.get(txId);
    const group = supervisionGroup(idSlot(txId), clock, DEFAULT_SUPERVISION);
    expect(record).toMatchObject({ status: 'PREPARING', services, pending: { inventory: true, payment: true, shipping: true }, req: 3, ok: 0, og: group });
    expect(record!.prepareDeadlineAt).toBe(clock + 10_000);
    // The operations live in an item written once, as JSON text.
    expect(JSON.parse((await log.getOps(txId))!.participants)).toEqual(services.map((service) => ({ service, operation: { n: service } })));
    // The supervisor sleeps first: until the starter's first due time (its deadline), at most its bucket's close.
    const bucketClosesAt = (Number(group.split('-')[1]) + DEFAULT_SUPERVISION.bucketSeconds) * 1000;
    expect(started).toEqual([{ name: group, input: { group, gen: 0, wakeAt: new Date(Math.min(clock + 10_000, bucketClosesAt)).toISOString() } }]);
    expect(events).toEqual(['log.claimIdempotencyKey', 'log.create', 'log.claimGroup', `workflow.start ${group}`, 'send PREPARE:inventory,PREPARE:payment,PREPARE:shipping']);
    expect(sent.map((m) => [m.type, m.participant, m.operation, m.attempt, m.deadlineAt])).toEqual(services.map((s) => ['PREPARE', s, { n: s }, 1, clock + 10_000]));
  });

  it('starts a group supervisor once (one claim of the group); a replay re-sends PREPARE only to the members still pending', async () => {
    const txId = await begin('key-replay-1');
    const other = await begin();
    // Dealt the next slot: the same bucket's next group, with a supervisor of its own.
    expect((await log.get(other))!.og).not.toBe((await log.get(txId))!.og);
    expect(started).toHaveLength(2);
    await vote(txId, 'inventory', 'YES');
    sent = [];
    const replay = await coordinator.start({ participants: services.map((service) => ({ service, operation: { n: service } })) }, 'key-replay-1');
    expect(replay).toEqual({ kind: 'started', txId, status: 'PREPARING', replayed: true });
    expect(sentAs()).toEqual([
      ['PREPARE', 'payment'],
      ['PREPARE', 'shipping'],
    ]);
  });
});

describe('phase one: the last vote decides', () => {
  it('counts YES and READ_ONLY; the last one decides COMMIT and sends COMMIT to the YES and READ_ONLY voters at once, with no workflow call', async () => {
    const txId = await begin();
    sent = [];
    events = [];
    await vote(txId, 'inventory', 'YES');
    await vote(txId, 'payment', 'READ_ONLY');
    expect(sent).toEqual([]);
    expect((await log.get(txId))).toMatchObject({ status: 'PREPARING', ok: 2, pending: { shipping: true } });
    await vote(txId, 'shipping', 'YES');
    expect(await log.get(txId)).toMatchObject({ status: 'COMMITTING', decision: 'COMMIT', decisionReason: 'every participant voted YES', ok: 3, req: 3, pending: {} });
    expect(sentAs()).toEqual([
      ['COMMIT', 'inventory'],
      ['COMMIT', 'payment'],
      ['COMMIT', 'shipping'],
    ]);
    expect(events.filter((e) => e.startsWith('workflow'))).toEqual([]);
    expect(events.filter((e) => e.startsWith('log.'))).toEqual(['log.recordYes', 'log.recordYes', 'log.recordYes', 'log.decideCommit']);
  });

  it('the first NO records the vote and decides ABORT in one write; ABORT goes to the YES voters and to whoever has not voted', async () => {
    const txId = await begin();
    await vote(txId, 'inventory', 'YES');
    sent = [];
    events = [];
    await vote(txId, 'payment', 'NO', 'insufficient funds');
    expect(events).toEqual(['log.recordNo', 'send ABORT:inventory,ABORT:shipping']);
    expect(await log.get(txId)).toMatchObject({ status: 'ABORTING', decision: 'ABORT', decisionReason: 'payment voted NO', votes: { payment: { vote: 'NO', reason: 'insufficient funds' } } });
    // A later vote is not recorded: the transaction is decided.
    await vote(txId, 'shipping', 'NO');
    expect((await log.get(txId))?.votes.shipping).toBeUndefined();
  });

  it('a redelivered deciding vote re-drives phase two to everyone still unacknowledged, and records nothing twice', async () => {
    const txId = await begin();
    for (const s of services) await vote(txId, s, 'YES');
    await ack(txId, 'inventory', 'COMMIT');
    const before = await log.get(txId);
    sent = [];
    await vote(txId, 'shipping', 'YES');
    expect(sentAs()).toEqual([
      ['COMMIT', 'payment'],
      ['COMMIT', 'shipping'],
    ]);
    expect(await log.get(txId)).toEqual(before);
  });

  it('a vote from a service that is not a member changes nothing and sends nothing', async () => {
    const txId = await begin();
    const before = await log.get(txId);
    sent = [];
    await vote(txId, 'order', 'YES');
    await vote(txId, 'order', 'NO');
    expect(await log.get(txId)).toEqual(before);
    expect(sent).toEqual([]);
  });

  it('a YES at or after the deadline by the recorder\'s clock is not recorded; the transaction aborts then', async () => {
    const txId = await begin();
    await vote(txId, 'inventory', 'YES');
    await vote(txId, 'payment', 'YES');
    clock += 10_000; // exactly the deadline
    sent = [];
    await vote(txId, 'shipping', 'YES');
    const record = await log.get(txId);
    expect(record).toMatchObject({ status: 'ABORTING', decision: 'ABORT', decisionReason: 'prepare deadline passed', ok: 2 });
    expect(record!.votes.shipping).toBeUndefined();
    // shipping's YES was not recorded: it may hold a prepared state, so it is told to abort too.
    expect(sentAs()).toEqual([
      ['ABORT', 'inventory'],
      ['ABORT', 'payment'],
      ['ABORT', 'shipping'],
    ]);
  });

  it('a late YES for an aborted transaction is answered with ABORT (with everyone still unacknowledged, or alone once finished); for an unknown transaction too', async () => {
    const txId = await begin();
    expect(await coordinator.abort(txId, 'test')).toMatchObject({ kind: 'aborted', decidedNow: true });
    sent = [];
    await vote(txId, 'inventory', 'YES');
    // A reply for a decided transaction re-drives phase two to everyone who owes an acknowledgement.
    expect(sentAs()).toEqual(services.map((s) => ['ABORT', s]));
    expect((await log.get(txId))?.votes.inventory).toBeUndefined();
    for (const s of services) await ack(txId, s, 'ABORT');
    expect((await log.get(txId))?.status).toBe('ABORTED');
    sent = [];
    await vote(txId, 'payment', 'YES');
    expect(sentAs()).toEqual([['ABORT', 'payment']]);
    sent = [];
    await vote('tx-unknown-0001', 'payment', 'YES');
    expect(sent.map((m) => [m.type, m.participant, m.txId])).toEqual([['ABORT', 'payment', 'tx-unknown-0001']]);
  });
});

describe('abort requests', () => {
  it('answer aborted (decided now, then already), unknown, and committed', async () => {
    const txId = await begin();
    await vote(txId, 'inventory', 'YES');
    sent = [];
    const first = await coordinator.abort(txId, 'aborted on request');
    expect(first).toMatchObject({ kind: 'aborted', decidedNow: true, record: { status: 'ABORTING', decisionReason: 'aborted on request' } });
    expect(sentAs()).toEqual([
      ['ABORT', 'inventory'],
      ['ABORT', 'payment'],
      ['ABORT', 'shipping'],
    ]);
    expect(await coordinator.abort(txId, 'again')).toMatchObject({ kind: 'aborted', decidedNow: false, record: { decisionReason: 'aborted on request' } });
    expect(await coordinator.abort('tx-unknown-0002', 'nothing')).toEqual({ kind: 'unknown' });

    const committed = await begin();
    for (const s of services) await vote(committed, s, 'YES');
    expect(await coordinator.abort(committed, 'too late')).toMatchObject({ kind: 'committed', record: { status: 'COMMITTING', decision: 'COMMIT' } });
  });

  it('once every YES is recorded, an abort finds COMMIT the only outcome and finishes it, even though the decider crashed before deciding', async () => {
    const txId = await begin();
    // The votes as the reply path records them; its decision write never happens (a crash).
    for (const s of services) await log.recordYes(txId, s, { vote: 'YES', at: new Date(clock).toISOString() }, clock);
    expect(await log.get(txId)).toMatchObject({ status: 'PREPARING', ok: 3, req: 3 });
    sent = [];
    const outcome = await coordinator.abort(txId, 'deadlock victim');
    expect(outcome).toMatchObject({ kind: 'committed', record: { status: 'COMMITTING', decision: 'COMMIT' } });
    expect(sentAs()).toEqual(services.map((s) => ['COMMIT', s]));
  });
});

describe('phase two', () => {
  it('the last ACK finishes the transaction: final status, TTL, out of the open index; a duplicate ACK changes nothing', async () => {
    const txId = await begin();
    await vote(txId, 'inventory', 'YES');
    await vote(txId, 'payment', 'READ_ONLY');
    await vote(txId, 'shipping', 'YES');
    await ack(txId, 'inventory', 'COMMIT');
    await ack(txId, 'inventory', 'COMMIT');
    expect((await log.get(txId))?.status).toBe('COMMITTING');
    clock += 2_000;
    await ack(txId, 'shipping', 'COMMIT');
    // The READ_ONLY voter holds its read locks until it acknowledges.
    expect((await log.get(txId))?.status).toBe('COMMITTING');
    await ack(txId, 'payment', 'COMMIT');
    const record = await log.get(txId);
    expect(record).toMatchObject({ status: 'COMMITTED', expiresAt: Math.floor(clock / 1000) + 30 * 86_400, finishedAt: new Date(clock).toISOString() });
    expect(record?.og).toBeUndefined();
    clock += 5_000;
    await ack(txId, 'shipping', 'COMMIT');
    expect(await log.get(txId)).toEqual(record);
    // finish() again only reads.
    expect(await coordinator.finish(record!)).toEqual(record);
  });

  it('an ACK for the wrong phase is not recorded', async () => {
    const txId = await begin();
    for (const s of services) await vote(txId, s, 'YES');
    await ack(txId, 'inventory', 'ABORT');
    expect((await log.get(txId))?.acks.inventory).toBeUndefined();
  });

  it('ABORT waits for the YES voters and for those that never voted (one that never voted may have prepared)', async () => {
    const txId = await begin();
    await vote(txId, 'inventory', 'YES');
    await vote(txId, 'payment', 'NO');
    await ack(txId, 'inventory', 'ABORT');
    expect((await log.get(txId))?.status).toBe('ABORTING');
    await ack(txId, 'shipping', 'ABORT');
    expect((await log.get(txId))?.status).toBe('ABORTED');
  });
});
