// The fault injector (src/local/faults.ts): every kind does what docs/fault-tolerance.md says, on
// clients it did not build, and nothing happens while it is disabled.
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { ReceiveMessageCommand, SendMessageBatchCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineParticipant } from '../../src/participant/define';
import { InjectedCrash, PAUSE_REFUSED, installFaults, parseFaults } from '../../src/local/faults';
import { MemoryBarrierStore, type MemoryWrite } from '../../src/memory/barrier';
import { type LocalAws, startLocalAws } from '../support/aws';

let local: LocalAws;
beforeAll(async () => {
  local = await startLocalAws({ dynamodb: true, sqs: true });
});
afterAll(async () => {
  await local.stop();
});

async function countMessages(queueUrl: string): Promise<number> {
  let n = 0;
  for (let i = 0; i < 20; i++) {
    const out = await local.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 60 }));
    if (!out.Messages?.length) return n;
    n += out.Messages.length;
  }
  return n;
}

describe('SQS message faults', () => {
  it('drops: the sender sees success, nothing is queued', async () => {
    const queueUrl = await local.scratchQueue('faults-drop');
    const faults = installFaults({ seed: 1, 'sqs.drop': 1 });
    faults.enabled = true;
    const out = await local.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'lost' }));
    await local.sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: [{ Id: 'a', MessageBody: 'a' }, { Id: 'b', MessageBody: 'b' }] }));
    faults.enabled = false;
    expect(out.MessageId).toMatch(/^dropped-/);
    expect(await countMessages(queueUrl)).toBe(0);
    expect(faults.stats()['sqs.drop']).toBe(3);
  });

  it('duplicates', async () => {
    const queueUrl = await local.scratchQueue('faults-dup');
    const faults = installFaults({ seed: 1, 'sqs.duplicate': 1 });
    faults.enabled = true;
    for (let i = 0; i < 3; i++) await local.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: `m${i}` }));
    faults.enabled = false;
    expect(await countMessages(queueUrl)).toBe(6);
  });

  it('delays (and so reorders)', async () => {
    const queueUrl = await local.scratchQueue('faults-delay');
    const faults = installFaults({ seed: 1, 'sqs.delay': 1, 'sqs.delayMaxSeconds': 1 });
    faults.enabled = true;
    await local.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'first' }));
    faults.enabled = false;
    await local.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'second' }));
    const early = await local.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }));
    expect(early.Messages?.map((m) => m.Body)).toEqual(['second']);
    const late = await local.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 3 }));
    expect(late.Messages?.map((m) => m.Body)).toEqual(['first']);
  });
});

describe('service call faults', () => {
  it('fail a call at once with a 5xx, past the SDK retries', async () => {
    const faults = installFaults({ seed: 1, 'dynamodb.fail': 1 });
    faults.enabled = true;
    const err = await local.dynamodb.send(new ListTablesCommand({})).catch((e: unknown) => e as Error & { $metadata: { httpStatusCode: number } });
    faults.enabled = false;
    expect(err).toMatchObject({ name: 'InternalServerError', $metadata: { httpStatusCode: 500 } });
    await expect(local.dynamodb.send(new ListTablesCommand({}))).resolves.toBeDefined();
  });

  it('throttle single attempts, which the SDK retries', async () => {
    const faults = installFaults({ seed: 3, 'dynamodb.throttle': 0.3 });
    faults.enabled = true;
    let failed = 0;
    for (let i = 0; i < 30; i++) await local.dynamodb.send(new ListTablesCommand({})).catch(() => failed++);
    faults.enabled = false;
    expect(faults.stats()['dynamodb.throttle']).toBeGreaterThan(3);
    // 30% per attempt, 3 attempts: about 3% of calls fail; most are saved by the retry.
    expect(failed).toBeLessThan(faults.stats()['dynamodb.throttle']);
  });

  it('inject nothing while disabled', async () => {
    const faults = installFaults({ seed: 1, 'dynamodb.fail': 1, 'sqs.drop': 1 });
    await expect(local.dynamodb.send(new ListTablesCommand({}))).resolves.toBeDefined();
    expect(Object.values(faults.stats()).every((n) => n === 0)).toBe(true);
  });
});

describe('participant crashes', () => {
  const effects: string[] = [];
  const participant = defineParticipant({
    service: 'crasher',
    async prepare({ txId }) {
      effects.push(`prepare:${txId}`);
      return { vote: 'YES' };
    },
    commit: async () => [],
    abort: async () => [],
  });

  it('crash before the handler runs, or after the effect was written with the barrier', async () => {
    const before = installFaults({ seed: 1, 'participant.crashBefore': 1 });
    before.enabled = true;
    await expect(before.wrapParticipant(participant).prepare({ txId: 'tx-00000001', operation: {}, deadlineAt: 0 })).rejects.toThrow(InjectedCrash);
    expect(effects).toEqual([]);

    const after = installFaults({ seed: 1, 'participant.crashAfter': 1 });
    after.enabled = true;
    const store = after.wrapBarrierStore(new MemoryBarrierStore('crasher'));
    let landed = 0;
    const effect: MemoryWrite = { apply: () => void landed++ };
    // A write without an effect (a claim) does not crash; one with its effect crashes once it landed.
    expect(await store.write('tx-00000002', 0, { state: 'PREPARING', operation: {}, claim: { runId: 'r', untilMs: 1 } }, 0)).toEqual({ kind: 'written' });
    await expect(store.write('tx-00000002', 1, { state: 'PREPARED', operation: {}, vote: 'YES' }, 0, [effect])).rejects.toThrow(/crashed after writing PREPARED/);
    expect(landed).toBe(1);
    expect((await store.read('tx-00000002')).record).toMatchObject({ state: 'PREPARED', vote: 'YES' });
  });

  it('pause a prepare run before its effect, its heartbeat too; when the barrier moved meanwhile, its write is refused', async () => {
    const faults = installFaults({ seed: 1, 'participant.pause': 1, 'participant.pauseMaxMs': 300 });
    faults.enabled = true;
    const inner = new MemoryBarrierStore('crasher');
    const store = faults.wrapBarrierStore(inner);
    let landed = 0;
    const effect: MemoryWrite = { apply: () => void landed++ };
    const claim = (runId: string) => ({ state: 'PREPARING' as const, operation: {}, claim: { runId, untilMs: 1 } });
    expect(await store.write('tx-00000003', 0, claim('frozen'), 0)).toEqual({ kind: 'written' });
    const paused = store.write('tx-00000003', 1, { state: 'PREPARED', operation: {}, vote: 'YES' }, 0, [effect]);
    // While frozen, its own claim renewal waits; another run takes the claim over and the ABORT lands.
    let renewed = false;
    const renewal = store.write('tx-00000003', 1, claim('frozen'), 0).then((r) => {
      renewed = true;
      return r;
    });
    expect(await inner.write('tx-00000003', 1, claim('other'), 0)).toEqual({ kind: 'written' });
    expect(renewed).toBe(false);
    expect(await inner.write('tx-00000003', 2, { state: 'ABORTED', prepareStarted: true, operation: {} }, 0)).toEqual({ kind: 'written' });
    expect(await paused).toEqual({ kind: 'moved' });
    expect(await renewal).toEqual({ kind: 'moved' });
    expect(landed).toBe(0);
    expect(faults.stats()).toMatchObject({ 'participant.pause': 1, [PAUSE_REFUSED]: 1 });
  });
});

describe('DTC_FAULTS', () => {
  it('is checked: unknown kinds and rates outside [0, 1] are rejected', () => {
    expect(parseFaults('{"seed":4,"sqs.drop":0.1}')).toMatchObject({ seed: 4, 'sqs.drop': 0.1, 'dynamodb.fail': 0 });
    expect(() => parseFaults('{"sqs.lose":0.1}')).toThrow(/DTC_FAULTS is invalid/);
    expect(() => parseFaults('{"sqs.drop":2}')).toThrow(/sqs.drop/);
    expect(() => parseFaults('nope')).toThrow(/not JSON/);
  });
});
