// The participant runner built purely from ports: the in-memory barrier store and reply sender, a
// virtual clock and a virtual Sleep, and the lock service on the in-memory lock store. No network,
// no timers: time moves only when the test advances it, so the heartbeats and a duplicate's polling
// run exactly when the test says.
import { describe, expect, it } from 'vitest';
import type { Sleep } from '../../src/core/ports';
import { MemoryBarrierStore } from '../../src/memory/barrier';
import { MemoryQueue, MemoryReplySender } from '../../src/memory/sqs';
import { defineParticipant } from '../../src/participant/define';
import { createRunner } from '../../src/participant/runner';
import { memoryLogger, message } from '../support/fixtures';
import { runnerPorts } from '../support/runner-ports';

/** Virtual time: sleepers wake in due order when the test advances the clock. */
class VirtualTime {
  nowMs = 1_800_000_000_000;
  private sleepers: { dueMs: number; wake: () => void }[] = [];

  readonly sleep: Sleep = (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason as Error);
      const sleeper = { dueMs: this.nowMs + ms, wake: resolve };
      this.sleepers.push(sleeper);
      signal?.addEventListener('abort', () => {
        this.sleepers = this.sleepers.filter((s) => s !== sleeper);
        reject(signal.reason as Error);
      }, { once: true });
    });

  get sleeping(): number {
    return this.sleepers.length;
  }

  /** Moves the clock forward `ms`, waking each sleeper at its due time and letting it run. */
  async advance(ms: number): Promise<void> {
    const until = this.nowMs + ms;
    for (;;) {
      const next = this.sleepers.filter((s) => s.dueMs <= until).sort((a, b) => a.dueMs - b.dueMs)[0];
      if (!next) break;
      this.nowMs = Math.max(this.nowMs, next.dueMs);
      this.sleepers = this.sleepers.filter((s) => s !== next);
      next.wake();
      await settle();
    }
    this.nowMs = until;
  }
}

/** Lets every promise chain that can run, run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function gate() {
  let open: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

describe('a runner built from ports', () => {
  it('renews a slow prepare claim on virtual time; a duplicate polls, then re-sends the vote; locks are held and released', async () => {
    const time = new VirtualTime();
    const barrier = new MemoryBarrierStore('tester');
    const { replies, sent, lockStore, locks } = runnerPorts(() => time.nowMs, time.sleep);
    const release = gate();
    let prepares = 0;
    const participant = defineParticipant({
      service: 'tester',
      async prepare({ lock }) {
        prepares++;
        await lock!('sku-1');
        await release.opened;
        return { vote: 'YES' };
      },
      commit: async () => [],
      abort: async () => [],
    });
    let runs = 0;
    const runner = createRunner({
      participant,
      barrierStore: barrier,
      replies,
      locks,
      nowMs: () => time.nowMs,
      newRunId: () => `run-${++runs}`,
      random: () => 0.5,
      sleep: time.sleep,
      leaseMs: 3_000,
      lockLeaseMs: 3_000,
      busyWaitMs: 10_000,
      logger: memoryLogger(),
    });
    const txId = 'tx-ports-1';
    const first = runner.handle(message('PREPARE', txId, 'tester'));
    await expect.poll(() => time.sleeping).toBe(2); // the claim's and the locks' heartbeats
    const claimBefore = (await barrier.read(txId)).record;
    expect(claimBefore).toMatchObject({ state: 'PREPARING', claim: { runId: 'run-1', untilMs: time.nowMs + 3_000 } });
    const leaseBefore = (await lockStore.get('sku-1')).owners['tx#tx-ports-1']!.leaseUntilMs;

    // A third of the lease later both heartbeats have renewed.
    await time.advance(1_000);
    expect((await barrier.read(txId)).record).toMatchObject({ claim: { runId: 'run-1', untilMs: time.nowMs + 3_000 } });
    expect((await lockStore.get('sku-1')).owners['tx#tx-ports-1']!.leaseUntilMs).toBe(leaseBefore + 1_000);

    // A duplicate (with heartbeats of its own) finds the barrier busy and polls on the virtual clock.
    const duplicate = runner.handle(message('PREPARE', txId, 'tester'));
    await expect.poll(() => time.sleeping).toBe(5);
    await time.advance(500);
    release.open();
    await expect(first).resolves.toEqual({ kind: 'vote', vote: 'YES' });
    await time.advance(2_000);
    await expect(duplicate).resolves.toEqual({ kind: 'vote', vote: 'YES' });
    expect(prepares).toBe(1);
    expect(sent().map((r) => r.type === 'VOTE' && r.vote)).toEqual(['YES', 'YES']);
    expect(time.sleeping).toBe(0);

    await expect(runner.handle(message('COMMIT', txId, 'tester'))).resolves.toEqual({ kind: 'ack', phase: 'COMMIT' });
    expect(sent()).toEqual([{ v: 1, type: 'ACK', txId, participant: 'tester', phase: 'COMMIT' }]);
    expect((await lockStore.get('sku-1')).owners).toEqual({});
    expect(await lockStore.held('tx#tx-ports-1', 'tester')).toEqual([]);
  });

  it("votes without renewing its locks when this run's grants already cover the deadline and its grace; renews when they do not", async () => {
    const time = new VirtualTime();
    const { replies, sent, lockStore, locks } = runnerPorts(() => time.nowMs, time.sleep);
    let heldReads = 0;
    const held = lockStore.held.bind(lockStore);
    lockStore.held = (owner, scope) => {
      heldReads++;
      return held(owner, scope);
    };
    const participant = defineParticipant({
      service: 'tester',
      async prepare({ lock }) {
        await lock!('sku-1');
        return { vote: 'YES' };
      },
      commit: async () => [],
      abort: async () => [],
    });
    const runner = createRunner({ participant, barrierStore: new MemoryBarrierStore('tester'), replies, locks, nowMs: () => time.nowMs, sleep: time.sleep, lockLeaseMs: 15_000, logger: memoryLogger() });
    const lease = async (txId: string) => (await lockStore.get('sku-1')).owners[`tx#${txId}`]!.leaseUntilMs;

    // A 10 s deadline: the 15 s lease granted now already covers it and the 5 s grace.
    const near = { ...message('PREPARE', 'tx-near-1', 'tester'), deadlineAt: time.nowMs + 10_000 };
    await expect(runner.handle(near)).resolves.toEqual({ kind: 'vote', vote: 'YES' });
    expect(heldReads).toBe(0);
    expect(await lease('tx-near-1')).toBe(time.nowMs + 15_000);
    expect(await lease('tx-near-1')).toBeGreaterThanOrEqual(near.deadlineAt + 5_000);
    await expect(runner.handle(message('ABORT', 'tx-near-1', 'tester'))).resolves.toEqual({ kind: 'ack', phase: 'ABORT' });

    // A 60 s deadline: the grant does not cover it, so the locks are renewed to the deadline and its grace.
    const far = { ...message('PREPARE', 'tx-far-01', 'tester'), deadlineAt: time.nowMs + 60_000 };
    await expect(runner.handle(far)).resolves.toEqual({ kind: 'vote', vote: 'YES' });
    expect(heldReads).toBeGreaterThan(0);
    expect(await lease('tx-far-01')).toBe(far.deadlineAt + 5_000);

    // A replayed PREPARE (its vote stored) is granted nothing in this run: it renews what the first run took.
    const before = heldReads;
    await time.advance(1_000);
    await expect(runner.handle(far)).resolves.toEqual({ kind: 'vote', vote: 'YES' });
    expect(heldReads).toBeGreaterThan(before);
    expect(sent().map((r) => (r.type === 'VOTE' ? r.vote : r.type))).toEqual(['YES', 'ACK', 'YES', 'YES']);
  });

  it('says which option is missing when neither a port nor its AWS setting is given', () => {
    const participant = defineParticipant({ service: 'tester', prepare: async () => ({ vote: 'YES' }), commit: async () => [], abort: async () => [] });
    expect(() => createRunner({ participant, replies: new MemoryReplySender(new MemoryQueue('replies', { clock: () => 0 })) })).toThrow(/needs `barrierStore` or `table`/);
    expect(() => createRunner({ participant, barrierStore: new MemoryBarrierStore('tester') })).toThrow(/needs `replies` or `replyQueueUrl`/);
  });
});
