// The in-memory SQS model's own rules beyond what fauxqs shares (test/contract/queues.test.ts):
// the fault hook the simulation drives, delays, and the bounds it refuses.
import { describe, expect, it } from 'vitest';
import { MemoryQueue, MemoryReplySender, ReceiptHandleIsInvalid } from '../../src/memory/sqs';

function queue(options: Partial<ConstructorParameters<typeof MemoryQueue>[1]> = {}) {
  let nowMs = 0;
  const q = new MemoryQueue('q', { clock: () => nowMs, ...options });
  return { q, advance: (ms: number) => void (nowMs += ms) };
}

describe('MemoryQueue', () => {
  it('lets the driver lose, duplicate and delay sends', () => {
    const fates = [{ copies: 0, delayMs: 0 }, { copies: 2, delayMs: 0 }, { copies: 1, delayMs: 5_000 }];
    const { q, advance } = queue({ onSend: () => fates.shift()! });
    q.send('lost');
    q.send('twice');
    q.send('late');
    expect(q.receive(10).map((m) => m.body)).toEqual(['twice', 'twice']);
    advance(5_000);
    expect(q.receive(10).map((m) => m.body)).toEqual(['late']);
  });

  it('answers whether a delete or visibility change was honoured, and refuses a foreign receipt', () => {
    const { q, advance } = queue({ visibilityTimeoutMs: 1_000 });
    q.send('m');
    const [first] = q.receive(1);
    advance(1_000);
    const [second] = q.receive(1);
    expect(q.changeVisibility(first!.receiptHandle, 0)).toBe(false);
    expect(q.delete(first!.receiptHandle)).toBe(false);
    expect(q.depth()).toEqual({ visible: 0, inFlight: 1 });
    expect(q.nextVisibleAt()).toBe(2_000);
    expect(q.delete(second!.receiptHandle)).toBe(true);
    expect(q.delete(second!.receiptHandle)).toBe(false);
    expect(() => q.delete('other/q-0/1')).toThrow(ReceiptHandleIsInvalid);
  });

  it('refuses what SQS refuses: more than 10 per receive, visibility past 12 h', () => {
    const { q } = queue();
    expect(() => q.receive(11)).toThrow(/max must be 1..10/);
    expect(() => q.receive(1, 12 * 3_600_000 + 1)).toThrow(/visibility timeout/);
  });

  it('MemoryReplySender puts the reply on the queue as JSON', async () => {
    const { q } = queue();
    await new MemoryReplySender(q).send({ v: 1, type: 'ACK', txId: 'tx-reply-1', participant: 'inventory', phase: 'COMMIT' });
    expect(JSON.parse(q.receive(1)[0]!.body)).toMatchObject({ type: 'ACK', participant: 'inventory' });
  });
});
