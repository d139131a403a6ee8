// The in-memory ports a participant runner test needs besides its barrier store: a reply queue it
// can drain, and the lock service on the in-memory lock store (every transaction PREPARING, so no
// lock wait aborts anyone). Time comes from the test's own clock and Sleep.
import type { ReplyMessage } from '../../src/core/messages';
import type { Sleep } from '../../src/core/ports';
import { LockService } from '../../src/locks/service';
import type { TransactionPort } from '../../src/locks/transactions';
import { MemoryLockStore } from '../../src/memory/locks';
import { MemoryQueue, MemoryReplySender } from '../../src/memory/sqs';

export function runnerPorts(nowMs: () => number, sleep: Sleep) {
  const replyQueue = new MemoryQueue('replies', { clock: nowMs });
  /** Takes (and forgets) what was sent so far. */
  const sent = (): ReplyMessage[] =>
    replyQueue.receive(10).map((m) => {
      replyQueue.delete(m.receiptHandle);
      return JSON.parse(m.body) as ReplyMessage;
    });
  const lockStore = new MemoryLockStore();
  const transactions: TransactionPort = {
    get: (txId) => Promise.resolve({ txId, status: 'PREPARING', createdAt: new Date(nowMs()).toISOString() }),
    abort: () => Promise.reject(new Error('nobody is aborted here')),
  };
  const locks = new LockService({ store: lockStore, transactions, nowMs, random: () => 0.5, sleep });
  return { replies: new MemoryReplySender(replyQueue), sent, lockStore, locks };
}
