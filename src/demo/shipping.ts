// Shipping: a shipment per order, created PENDING with the YES, SCHEDULED at commit,
// removed at abort so that the order can be shipped by a later transaction.
import { z } from 'zod';
import { type Participant, defineParticipant } from '../participant/define';
import type { DemoTable } from './records';

export const orderId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, _ or -');

export const shippingOperation = z.object({ orderId, address: z.string().min(1).max(500) });
export type ShippingOperation = z.infer<typeof shippingOperation>;

export const shipmentKey = (id: string): string => `shipment#${id}`;

export function shippingParticipant(table: DemoTable): Participant {
  return defineParticipant<ShippingOperation>({
    service: 'shipping',
    operation: shippingOperation,
    async prepare({ txId, operation }) {
      const key = shipmentKey(operation.orderId);
      if (await table.get(key)) return { vote: 'NO', reason: `shipment exists for order ${operation.orderId}` };
      return { vote: 'YES', writes: [table.create(key, txId, { orderId: operation.orderId, address: operation.address, status: 'PENDING' })] };
    },
    async commit({ txId, operation }) {
      return [table.transition(shipmentKey(operation.orderId), txId, 'PENDING', 'SCHEDULED')];
    },
    async abort({ txId, operation }) {
      return [table.deleteIf(shipmentKey(operation.orderId), txId, 'PENDING')];
    },
  });
}
