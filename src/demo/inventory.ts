// Inventory: stock per SKU, held for a transaction at prepare, sold at commit, released at abort.
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

/** One hold per SKU: the same SKU twice in an order is one hold of the summed quantity. */
export function quantitiesBySku(operation: InventoryOperation): [string, number][] {
  const totals = new Map<string, number>();
  for (const { sku, quantity } of operation.items) totals.set(sku, (totals.get(sku) ?? 0) + quantity);
  return [...totals.entries()].sort(([a], [b]) => a.localeCompare(b));
}

export function inventoryParticipant(table: DemoTable): Participant {
  return defineParticipant<InventoryOperation>({
    service: 'inventory',
    operation: inventoryOperation,
    async prepare({ txId, operation }) {
      for (const [sku, quantity] of quantitiesBySku(operation)) {
        const result = await table.placeHold(skuKey(sku), txId, quantity, INVENTORY_FIELDS);
        // Holds placed for earlier SKUs stay: the SDK records NO and then runs abort, which releases them.
        if (result.kind === 'unknown') return { vote: 'NO', reason: `unknown sku ${sku}` };
        if (result.kind === 'short') return { vote: 'NO', reason: `insufficient stock for ${sku}: ${result.free} available, ${quantity} requested` };
      }
      return { vote: 'YES' };
    },
    async commit({ txId, operation }) {
      for (const [sku, quantity] of quantitiesBySku(operation)) await table.consumeHold(skuKey(sku), txId, quantity, INVENTORY_FIELDS);
    },
    async abort({ txId, operation }) {
      for (const [sku, quantity] of quantitiesBySku(operation)) await table.releaseHold(skuKey(sku), txId, quantity, INVENTORY_FIELDS);
    },
  });
}
