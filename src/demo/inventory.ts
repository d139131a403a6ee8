// Inventory: stock per SKU, held for a transaction at prepare, sold at commit, released at abort.
import { systemSleep } from '../aws/system';
import { z } from 'zod';
import { type Participant, defineParticipant } from '../participant/define';
import type { DemoTable, HoldFields } from './records';

export const skuId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, _ or -');

export const inventoryOperation = z.object({
  items: z
    .array(z.object({ sku: skuId, quantity: z.number().int().positive().max(1_000_000) }))
    .min(1)
    .max(100),
});
export type InventoryOperation = z.infer<typeof inventoryOperation>;

export const INVENTORY_FIELDS: HoldFields = { free: 'available', held: 'held', done: 'sold' };

export const skuKey = (sku: string): string => `sku#${sku}`;

/**
 * One hold per SKU: the same SKU twice in an order is one hold of the summed quantity. In the order
 * the order lists them (first mention), deliberately not sorted: two orders that list the same SKUs
 * in opposite orders lock them in opposite orders and can deadlock, which the detector resolves.
 */
export function quantitiesBySku(operation: InventoryOperation): [string, number][] {
  const totals = new Map<string, number>();
  for (const { sku, quantity } of operation.items) totals.set(sku, (totals.get(sku) ?? 0) + quantity);
  return [...totals.entries()];
}

/** The lock table resource of a SKU. */
export const skuLock = (sku: string): string => `inventory/sku/${sku}`;

export interface InventoryOptions {
  /**
   * A demo knob: pause this long after each SKU but the last, with its lock held. Widens the window
   * in which two orders with opposite SKU orders deadlock, so the detection demo (and its test)
   * does not depend on how closely the two PREPAREs arrive. Default 0; at most 10 s.
   */
  pauseBetweenLocksMs?: number;
}

export function inventoryParticipant(table: DemoTable, options: InventoryOptions = {}): Participant {
  const pauseMs = options.pauseBetweenLocksMs ?? 0;
  if (!Number.isInteger(pauseMs) || pauseMs < 0 || pauseMs > 10_000) throw new Error(`pauseBetweenLocksMs must be an integer from 0 to 10000, got ${pauseMs}`);
  return defineParticipant<InventoryOperation>({
    service: 'inventory',
    operation: inventoryOperation,
    async prepare({ txId, operation, lock }) {
      const skus = quantitiesBySku(operation);
      const writes = [];
      for (const [i, [sku, quantity]] of skus.entries()) {
        if (i > 0 && pauseMs > 0) await systemSleep(pauseMs);
        // Exclusive: the check (enough stock?) and the hold happen under the lock, and the hold
        // carries the lock's fencing token. Without a lock service the hold's own condition keeps stock.
        const token = lock ? (await lock(skuLock(sku), 'X')).token : undefined;
        const refusal = await table.holdRefusal(skuKey(sku), quantity, INVENTORY_FIELDS, token);
        if (refusal?.kind === 'unknown') return { vote: 'NO', reason: `unknown sku ${sku}` };
        if (refusal?.kind === 'short') return { vote: 'NO', reason: `insufficient stock for ${sku}: ${refusal.free} available, ${quantity} requested` };
        if (refusal?.kind === 'fenced') return { vote: 'NO', reason: `stale fencing token for ${sku}: ${token} is older than ${refusal.lastToken}` };
        writes.push(table.placeHold(skuKey(sku), txId, quantity, INVENTORY_FIELDS, token));
      }
      // Every SKU's hold lands together with the YES, or none does.
      return { vote: 'YES', writes };
    },
    async commit({ txId, operation }) {
      return quantitiesBySku(operation).map(([sku, quantity]) => table.consumeHold(skuKey(sku), txId, quantity, INVENTORY_FIELDS));
    },
    async abort({ txId, operation }) {
      return quantitiesBySku(operation).map(([sku, quantity]) => table.releaseHold(skuKey(sku), txId, quantity, INVENTORY_FIELDS));
    },
  });
}
