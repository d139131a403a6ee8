// One participant's barrier records in memory, with exactly the semantics of
// src/participant/barrier-store.ts (test/contract/barrier.test.ts runs both): items are encoded,
// decoded and selected for the restart scan by the same functions (src/core/barrier-item.ts), and
// every write is conditioned on the revision read. Items are stored as the adapter stores them, so
// the operation goes through JSON exactly as it does in DynamoDB and nothing stored is aliased.
import { ABSENT, type BarrierRecord, type StoredBarrier } from '../core/barrier';
import { barrierKey, decodeBarrier, encodeBarrier, unsettled } from '../core/barrier-item';
import type { BarrierStorePort, UnsettledBarrier } from '../core/ports';

export class MemoryBarrierStore implements BarrierStorePort {
  private readonly items = new Map<string, Record<string, unknown>>();

  constructor(readonly participant: string) {}

  async read(txId: string): Promise<StoredBarrier> {
    const item = this.items.get(barrierKey(txId));
    return item ? decodeBarrier(item, `${barrierKey(txId)} of ${this.participant}`) : { rev: ABSENT.rev, record: { state: 'NONE' } };
  }

  async write(txId: string, expectedRev: number, next: BarrierRecord, nowMs: number): Promise<boolean> {
    const item = encodeBarrier(txId, this.participant, expectedRev + 1, next, nowMs);
    const current = this.items.get(barrierKey(txId));
    // Revision 0: no record may exist yet; otherwise it must still be at the revision read.
    if (expectedRev === 0 ? current !== undefined : current?.rev !== expectedRev) return false;
    this.items.set(barrierKey(txId), item);
    return true;
  }

  /** In txId order (a Scan's order is DynamoDB's own): one pass, so `maxPages` never binds here. */
  async scanUnsettled(sinceMs: number, _maxPages = 100): Promise<UnsettledBarrier[]> {
    const found: UnsettledBarrier[] = [];
    for (const key of [...this.items.keys()].sort()) {
      const b = unsettled(this.items.get(key)!, sinceMs);
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
