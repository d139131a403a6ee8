import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { ABORTED_REASON, BarrierBusyError, ProtocolViolationError } from '../../src/core/barrier';
import type { Vote } from '../../src/core/messages';
import { type TransactWrite, barrierKey } from '../../src/participant/barrier-store';
import type { Sleep } from '../../src/core/ports';
import { defineParticipant } from '../../src/participant/define';
import { MalformedMessageError, createRunner, documentClient } from '../../src/participant/runner';
import { type LocalAws, startLocalAws } from '../support/aws';
import { memoryLogger, message, newTxId, pause } from '../support/fixtures';

/**
 * A participant whose effect is a hold item per txId in its own table (`hold#<txId>`: HELD, then
 * DONE at commit; deleted at abort), written by the SDK with the barrier; calls are recorded.
 */
function recorder(options: { failFirstPrepare?: boolean; pauseFirstPrepare?: Promise<void> } = {}) {
  const calls: string[] = [];
  let failNext = options.failFirstPrepare ?? false;
  let pauseNext = options.pauseFirstPrepare;
  const participant = defineParticipant({
    service: 'tester',
    operation: z.object({ vote: z.enum(['YES', 'NO', 'READ_ONLY']), slowMs: z.number().int().optional() }),
    async prepare({ txId, operation }) {
      calls.push(`prepare:${txId}`);
      if (operation.slowMs) await pause(operation.slowMs);
      if (failNext) {
        failNext = false;
        throw new Error('crashed after building the effect, before the barrier write');
      }
      if (operation.vote !== 'YES') return operation.vote === 'NO' ? { vote: 'NO', reason: 'nope' } : { vote: operation.vote };
      const writes: TransactWrite[] = [{ Put: { TableName: table, Item: { pk: holdKey(txId), status: 'HELD' }, ConditionExpression: 'attribute_not_exists(pk)' } }];
      // A run frozen between building its effect and writing it (a GC pause, a frozen container).
      const paused = pauseNext;
      pauseNext = undefined;
      if (paused) await paused;
      return { vote: 'YES', writes };
    },
    async commit({ txId }) {
      calls.push(`commit:${txId}`);
      return [
        {
          Update: {
            TableName: table,
            Key: { pk: holdKey(txId) },
            UpdateExpression: 'SET #status = :done ADD commits :one',
            ConditionExpression: '#status = :held',
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: { ':done': 'DONE', ':held': 'HELD', ':one': 1 },
          },
        },
      ];
    },
    async abort({ txId }) {
      calls.push(`abort:${txId}`);
      return [{ Delete: { TableName: table, Key: { pk: holdKey(txId) }, ConditionExpression: '#status = :held', ExpressionAttributeNames: { '#status': 'status' }, ExpressionAttributeValues: { ':held': 'HELD' } } }];
    },
  });
  return { participant, calls };
}

const holdKey = (txId: string): string => `hold#${txId}`;

async function hold(txId: string): Promise<Record<string, unknown> | undefined> {
  const out = await documentClient(local.dynamodb).send(new GetCommand({ TableName: table, Key: { pk: holdKey(txId) }, ConsistentRead: true }));
  return out.Item;
}

/** A frozen process's timers: nothing fires (no heartbeat renews the claim) until the run stops them. */
const frozenSleep: Sleep = (_ms, signal) => new Promise((_resolve, reject) => signal?.addEventListener('abort', () => reject(signal.reason as Error)));

let local: LocalAws;
let table: string;
let replyQueueUrl: string;

beforeAll(async () => {
  // The app's reply queue of one participant (each participant speaks on its own).
  local = await startLocalAws({ dynamodb: true, queues: ['dtc-inventory-replies'] });
  table = await local.participantTable('tester');
  replyQueueUrl = local.queues['dtc-inventory-replies']!;
});
afterAll(async () => {
  await local.stop();
});

function runnerFor(participant: ReturnType<typeof recorder>['participant'], extra: { leaseMs?: number; busyWaitMs?: number; nowMs?: () => number; sleep?: Sleep } = {}) {
  return createRunner({ participant, replyQueueUrl, table, sqs: local.sqs, dynamodb: local.dynamodb, logger: memoryLogger(), ...extra });
}

async function barrier(txId: string): Promise<Record<string, unknown> | undefined> {
  const out = await documentClient(local.dynamodb).send(new GetCommand({ TableName: table, Key: { pk: barrierKey(txId) }, ConsistentRead: true }));
  return out.Item;
}

const yes = (txId: string, vote: Vote = 'YES', slowMs?: number) => message('PREPARE', txId, 'tester', { vote, ...(slowMs ? { slowMs } : {}) });

describe('runner', () => {
  it('runs prepare and commit once under duplicates and re-sends the same replies', async () => {
    const r = recorder();
    const runner = runnerFor(r.participant);
    const txId = newTxId();
    await runner.handle(yes(txId));
    await runner.handle(yes(txId));
    await runner.handle(message('COMMIT', txId, 'tester'));
    await runner.handle(message('COMMIT', txId, 'tester'));

    expect(r.calls).toEqual([`prepare:${txId}`, `commit:${txId}`]);
    expect(await hold(txId)).toMatchObject({ status: 'DONE', commits: 1 });
    const replies = await local.replies(replyQueueUrl);
    expect(replies.map((m) => (m.type === 'VOTE' ? m.vote : `ACK ${m.phase}`))).toEqual(['YES', 'YES', 'ACK COMMIT', 'ACK COMMIT']);
    expect(replies.every((m) => m.txId === txId && m.participant === 'tester')).toBe(true);
    expect(await barrier(txId)).toMatchObject({ state: 'COMMITTED', participant: 'tester', operationJson: JSON.stringify({ vote: 'YES' }) });
  });

  it('records an ABORT before any PREPARE and then votes NO without running user code', async () => {
    const r = recorder();
    const runner = runnerFor(r.participant);
    const txId = newTxId();
    await runner.handle(message('ABORT', txId, 'tester'));
    await runner.handle(yes(txId));
    await runner.handle(yes(txId));

    expect(r.calls).toEqual([]);
    expect(await local.replies(replyQueueUrl)).toEqual([
      { v: 1, type: 'ACK', txId, participant: 'tester', phase: 'ABORT' },
      { v: 1, type: 'VOTE', txId, participant: 'tester', vote: 'NO', reason: ABORTED_REASON },
      { v: 1, type: 'VOTE', txId, participant: 'tester', vote: 'NO', reason: ABORTED_REASON },
    ]);
    expect(await barrier(txId)).toMatchObject({ state: 'ABORTED', prepareStarted: false });
  });

  it('writes nothing for a NO vote, calls no abort for it, and refuses a COMMIT for it', async () => {
    const r = recorder();
    const runner = runnerFor(r.participant);
    const txId = newTxId();
    await runner.handle(yes(txId, 'NO'));
    await expect(runner.handle(message('COMMIT', txId, 'tester'))).rejects.toBeInstanceOf(ProtocolViolationError);
    await runner.handle(message('ABORT', txId, 'tester'));

    expect(await hold(txId)).toBeUndefined();
    expect(r.calls).toEqual([`prepare:${txId}`]);
    expect(await barrier(txId)).toMatchObject({ state: 'ABORTED' });
    const replies = await local.replies(replyQueueUrl);
    expect(replies).toEqual([
      { v: 1, type: 'VOTE', txId, participant: 'tester', vote: 'NO', reason: 'nope' },
      { v: 1, type: 'ACK', txId, participant: 'tester', phase: 'ABORT' },
    ]);
  });

  it('votes NO with the schema error for an invalid operation and runs no user code', async () => {
    const r = recorder();
    const runner = runnerFor(r.participant);
    const txId = newTxId();
    await runner.handle(message('PREPARE', txId, 'tester', { vote: 'MAYBE' }));

    expect(r.calls).toEqual([]);
    const [reply] = await local.replies(replyQueueUrl);
    expect(reply).toMatchObject({ type: 'VOTE', vote: 'NO' });
    expect(reply?.type === 'VOTE' && reply.reason).toMatch(/^invalid operation: vote:/);
  });

  it('lets one of several concurrent duplicates run prepare; the others wait for it and re-send its vote', async () => {
    const r = recorder();
    const runner = runnerFor(r.participant);
    const txId = newTxId();
    const outcomes = await Promise.all([runner.handle(yes(txId, 'YES', 300)), runner.handle(yes(txId, 'YES', 300)), runner.handle(yes(txId, 'YES', 300))]);

    expect(outcomes).toEqual(Array(3).fill({ kind: 'vote', vote: 'YES' }));
    expect(r.calls).toEqual([`prepare:${txId}`]);
    expect((await local.replies(replyQueueUrl)).map((m) => m.type === 'VOTE' && m.vote)).toEqual(['YES', 'YES', 'YES']);
  });

  it('hands a duplicate back as busy when the owner outlasts the wait', async () => {
    const r = recorder();
    const runner = runnerFor(r.participant, { busyWaitMs: 100 });
    const txId = newTxId();
    const results = await Promise.allSettled([runner.handle(yes(txId, 'YES', 600)), runner.handle(yes(txId, 'YES', 600)), runner.handle(yes(txId, 'YES', 600))]);

    expect(results.filter((x) => x.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.filter((x): x is PromiseRejectedResult => x.status === 'rejected');
    expect(rejected.map((x) => x.reason instanceof BarrierBusyError)).toEqual([true, true]);
    expect(r.calls).toEqual([`prepare:${txId}`]);
    expect((await local.replies(replyQueueUrl)).map((m) => m.type === 'VOTE' && m.vote)).toEqual(['YES']);
  });

  it('renews the claim of a slow prepare, so a duplicate arriving after one lease still waits', async () => {
    const r = recorder();
    const runner = runnerFor(r.participant, { leaseMs: 300, busyWaitMs: 0 });
    const txId = newTxId();
    const startedMs = Date.now();
    const slow = runner.handle(yes(txId, 'YES', 1_500));
    // Past the first lease, the claim still holds: it was renewed, so the duplicate must wait.
    await vi.waitFor(
      async () => {
        const record = await barrier(txId);
        const nowMs = Date.now();
        expect(nowMs).toBeGreaterThan(startedMs + 300);
        expect(record).toMatchObject({ state: 'PREPARING', claimUntilMs: expect.any(Number) });
        expect(record!.claimUntilMs).toBeGreaterThan(nowMs);
      },
      { timeout: 1_000, interval: 20 },
    );
    await expect(runner.handle(yes(txId))).rejects.toBeInstanceOf(BarrierBusyError);
    await slow;
    expect(r.calls).toEqual([`prepare:${txId}`]);
    expect((await local.replies(replyQueueUrl)).map((m) => m.type === 'VOTE' && m.vote)).toEqual(['YES']);
  });

  it('a crash between user prepare and the barrier write leaves nothing; the redelivery prepares again after the lease', async () => {
    const r = recorder({ failFirstPrepare: true });
    let nowMs = 1_000_000;
    const runner = runnerFor(r.participant, { leaseMs: 10_000, busyWaitMs: 0, nowMs: () => nowMs });
    const txId = newTxId();
    await expect(runner.handle(yes(txId))).rejects.toThrow(/crashed after building the effect/);
    expect(await barrier(txId)).toMatchObject({ state: 'PREPARING' });
    expect(await hold(txId)).toBeUndefined();

    // The redelivery arrives within the crashed run's lease: it waits; after the lease it takes over.
    await expect(runner.handle(yes(txId))).rejects.toBeInstanceOf(BarrierBusyError);
    nowMs += 10_001;
    await runner.handle(yes(txId));
    expect(await hold(txId)).toMatchObject({ status: 'HELD' });
    await runner.handle(message('COMMIT', txId, 'tester'));

    expect(r.calls).toEqual([`prepare:${txId}`, `prepare:${txId}`, `commit:${txId}`]);
    expect(await hold(txId)).toMatchObject({ status: 'DONE', commits: 1 });
    expect((await local.replies(replyQueueUrl)).map((m) => (m.type === 'VOTE' ? m.vote : m.phase))).toEqual(['YES', 'COMMIT']);
  });

  it('a prepare still running when ABORT arrives writes nothing and votes NO; user abort is not called', async () => {
    const r = recorder();
    const runner = runnerFor(r.participant);
    const txId = newTxId();
    const prepare = runner.handle(yes(txId, 'YES', 600));
    await vi.waitFor(() => expect(r.calls).toContain(`prepare:${txId}`), { timeout: 500, interval: 10 });
    await runner.handle(message('ABORT', txId, 'tester'));
    expect(await prepare).toEqual({ kind: 'vote', vote: 'NO', reason: ABORTED_REASON });

    expect(await hold(txId)).toBeUndefined();
    expect(r.calls).toEqual([`prepare:${txId}`]);
    expect(await local.replies(replyQueueUrl)).toEqual([
      { v: 1, type: 'ACK', txId, participant: 'tester', phase: 'ABORT' },
      { v: 1, type: 'VOTE', txId, participant: 'tester', vote: 'NO', reason: ABORTED_REASON },
    ]);
    // The late prepare never runs again once ABORT is recorded.
    await runner.handle(yes(txId));
    expect(r.calls.filter((c) => c.startsWith('prepare'))).toHaveLength(1);
    await local.replies(replyQueueUrl);
  });

  describe('a prepare run frozen past its lease, taken over, then resumed', () => {
    for (const decision of ['COMMIT', 'ABORT'] as const) {
      it(`changes nothing when it resumes after the new owner's YES and the ${decision}`, async () => {
        let resume!: () => void;
        const r = recorder({ pauseFirstPrepare: new Promise<void>((done) => (resume = done)) });
        const frozen = runnerFor(r.participant, { leaseMs: 200, busyWaitMs: 0, sleep: frozenSleep });
        const live = runnerFor(r.participant, { leaseMs: 200, busyWaitMs: 0 });
        const txId = newTxId();
        const paused = frozen.handle(yes(txId));
        await vi.waitFor(() => expect(r.calls).toEqual([`prepare:${txId}`]), { timeout: 2_000, interval: 10 });
        // No heartbeat renews the frozen run's claim: a duplicate takes it over once the lease ran out.
        await vi.waitFor(async () => expect(Date.now()).toBeGreaterThan(Number((await barrier(txId))!.claimUntilMs)), { timeout: 2_000, interval: 20 });
        expect(await live.handle(yes(txId))).toEqual({ kind: 'vote', vote: 'YES' });
        await live.handle(message(decision, txId, 'tester'));
        const settled = await hold(txId);

        resume();
        const outcome = await paused;
        expect(outcome).toEqual(decision === 'COMMIT' ? { kind: 'done', why: 'already committed' } : { kind: 'vote', vote: 'NO', reason: ABORTED_REASON });
        // Its hold never landed: the committed hold was not re-created or charged twice, the released one stays released.
        expect(await hold(txId)).toEqual(settled);
        if (decision === 'COMMIT') expect(settled).toMatchObject({ status: 'DONE', commits: 1 });
        else expect(settled).toBeUndefined();
        expect(await barrier(txId)).toMatchObject({ state: decision === 'COMMIT' ? 'COMMITTED' : 'ABORTED' });
        expect(r.calls).toEqual([`prepare:${txId}`, `prepare:${txId}`, `${decision.toLowerCase()}:${txId}`]);
        const replies = (await local.replies(replyQueueUrl)).map((m) => (m.type === 'VOTE' ? `${m.vote}${m.reason ? ` (${m.reason})` : ''}` : `ACK ${m.phase}`));
        expect(replies).toEqual(decision === 'COMMIT' ? ['YES', 'ACK COMMIT'] : ['YES', 'ACK ABORT', `NO (${ABORTED_REASON})`]);
      });
    }
  });

  it('rejects a body that is not a protocol message, or one addressed to another participant', async () => {
    const runner = runnerFor(recorder().participant);
    await expect(runner.handleBody('not json')).rejects.toBeInstanceOf(MalformedMessageError);
    await expect(runner.handleBody(JSON.stringify({ v: 1, type: 'PREPARE' }))).rejects.toThrow(/txId/);
    await expect(runner.handle(message('PREPARE', newTxId(), 'someone-else', { vote: 'YES' }))).rejects.toBeInstanceOf(MalformedMessageError);
    expect(await local.replies(replyQueueUrl)).toEqual([]);
  });
});
