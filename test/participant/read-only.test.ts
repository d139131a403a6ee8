// A READ_ONLY voter keeps its read locks until the decision reaches it (docs/consistency.md): the
// runner holds them past the vote, and releases them when COMMIT or ABORT arrives, before its ACK.
import { describe, expect, it } from 'vitest';
import { MemoryBarrierStore } from '../../src/memory/barrier';
import { defineParticipant } from '../../src/participant/define';
import { createRunner } from '../../src/participant/runner';
import { memoryLogger, message } from '../support/fixtures';
import { runnerPorts } from '../support/runner-ports';

function setup() {
  let nowMs = 1_800_000_000_000;
  const { replies, sent, lockStore, locks } = runnerPorts(
    () => nowMs,
    async (ms) => void (nowMs += ms),
  );
  const aborts: string[] = [];
  const participant = defineParticipant({
    service: 'reader',
    async prepare({ lock }) {
      await lock!('row-1', 'S');
      return { vote: 'READ_ONLY' };
    },
    async commit() {
      throw new Error('a READ_ONLY voter has nothing to commit');
    },
    async abort({ txId }) {
      aborts.push(txId);
      return [];
    },
  });
  let runs = 0;
  const runner = createRunner({
    participant,
    barrierStore: new MemoryBarrierStore('reader'),
    replies,
    locks,
    nowMs: () => nowMs,
    newRunId: () => `run-${++runs}`,
    random: () => 0.5,
    sleep: async () => undefined,
    logger: memoryLogger(),
  });
  const holders = async () => Object.keys((await lockStore.get('row-1')).owners);
  return { runner, sent, holders, aborts };
}

describe('a READ_ONLY voter', () => {
  it('keeps its read lock after its vote and releases it when COMMIT arrives, before its ACK', async () => {
    const { runner, sent, holders } = setup();
    const txId = 'tx-read-1';
    expect(await runner.handle(message('PREPARE', txId, 'reader'))).toEqual({ kind: 'vote', vote: 'READ_ONLY' });
    expect(sent()).toMatchObject([{ type: 'VOTE', vote: 'READ_ONLY' }]);
    expect(await holders()).toEqual([`tx#${txId}`]);
    // A duplicate PREPARE re-sends the vote and keeps the lock too.
    await runner.handle(message('PREPARE', txId, 'reader'));
    expect(sent()).toMatchObject([{ type: 'VOTE', vote: 'READ_ONLY' }]);
    expect(await holders()).toEqual([`tx#${txId}`]);
    expect(await runner.handle(message('COMMIT', txId, 'reader'))).toEqual({ kind: 'ack', phase: 'COMMIT' });
    expect(await holders()).toEqual([]);
    expect(sent()).toMatchObject([{ type: 'ACK', phase: 'COMMIT' }]);
  });

  it('releases its read lock when ABORT arrives; its abort() never runs, since it prepared nothing', async () => {
    const { runner, sent, holders, aborts } = setup();
    const txId = 'tx-read-2';
    await runner.handle(message('PREPARE', txId, 'reader'));
    expect(await holders()).toEqual([`tx#${txId}`]);
    sent();
    expect(await runner.handle(message('ABORT', txId, 'reader'))).toEqual({ kind: 'ack', phase: 'ABORT' });
    expect(await holders()).toEqual([]);
    expect(aborts).toEqual([]);
    expect(sent()).toMatchObject([{ type: 'ACK', phase: 'ABORT' }]);
  });
});
