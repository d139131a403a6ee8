// One participant's barrier records in memory, with exactly the semantics of
// src/participant/barrier-store.ts (test/contract/barrier.test.ts runs both): items are encoded,
// decoded and selected for the restart scan by the same functions (src/core/barrier-item.ts), and
// every write is conditioned on the revision read. Items are stored as the adapter stores them, so
// the operation goes through JSON exactly as it does in DynamoDB and nothing stored is aliased.
// The user's effect is a list of MemoryWrites over the participant's in-memory data: a barrier
// write checks the revision and every write's condition, then applies them all, synchronously, so
// no other call sees or runs between (the in-memory counterpart of TransactWriteItems).
import { ABSENT, type BarrierRecord, type BarrierWriteResult, type StoredBarrier } from '../core/barrier';
import { barrierKey, decodeBarrier, encodeBarrier, unsettled } from '../core/barrier-item';
import type { BarrierStorePort, UnsettledBarrier } from '../core/ports';

/** One action of an in-memory effect: `check` answers why it cannot apply (undefined: it can); `apply` applies it. */
export interface MemoryWrite {
  check?(): string | undefined;
  apply(): void;
}

export class MemoryBarrierStore implements BarrierStorePort<MemoryWrite> {
  private readonly items = new Map<string, Record<string, unknown>>();

  constructor(readonly participant: string) {}

  async read(txId: string): Promise<StoredBarrier> {
    const item = this.items.get(barrierKey(txId));
    return item ? decodeBarrier(item, `${barrierKey(txId)} of ${this.participant}`) : ABSENT;
  }

  async write(txId: string, expectedRev: number, next: BarrierRecord, nowMs: number, writes: readonly MemoryWrite[] = []): Promise<BarrierWriteResult> {
    const item = encodeBarrier(txId, this.participant, expectedRev + 1, next, nowMs);
    const current = this.items.get(barrierKey(txId));
    // Revision 0: no record may exist yet; otherwise it must still be at the revision read.
    if (expectedRev === 0 ? current !== undefined : current?.rev !== expectedRev) return { kind: 'moved' };
    const reasons = writes.map((w, i) => [i, w.check?.()] as const).filter(([, why]) => why !== undefined);
    if (reasons.length > 0) return { kind: 'rejected', reason: reasons.map(([i, why]) => `write ${i}: ${why}`).join('; ') };
    for (const w of writes) w.apply();
    this.items.set(barrierKey(txId), item);
    return { kind: 'written' };
  }

  /** In txId order (a Scan's order is DynamoDB's own): one pass, so `maxPages` never binds here. */
  async scanUnsettled(_maxPages = 100): Promise<UnsettledBarrier[]> {
    const found: UnsettledBarrier[] = [];
    for (const key of [...this.items.keys()].sort()) {
      const b = unsettled(this.items.get(key)!);
      if (b) found.push(b);
    }
    return found;
  }

  /** Every record as read back, by txId (for invariant checks in tests and simulations). */
  snapshot(): Map<string, StoredBarrier> {
    const out = new Map<string, StoredBarrier>();
    for (const [key, item] of [...this.items].sort(([a], [b]) => (a < b ? -1 : 1))) out.set(String(item.txId), decodeBarrier(item, key));
    return out;
  }
}
