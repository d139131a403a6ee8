// Orders: the order record, PENDING while the transaction is open, then CONFIRMED or CANCELLED.
import { z } from 'zod';
import { type Participant, defineParticipant } from '../participant/define';
import { inventoryOperation } from './inventory';
import type { DemoTable } from './records';
import { orderId } from './shipping';

export const orderOperation = z.object({
  orderId,
  items: inventoryOperation.shape.items,
  total: z.number().int().nonnegative().max(1_000_000_000),
});
export type OrderOperation = z.infer<typeof orderOperation>;

export const orderKey = (id: string): string => `order#${id}`;

export function orderParticipant(table: DemoTable): Participant {
  return defineParticipant<OrderOperation>({
    service: 'order',
    operation: orderOperation,
    async prepare({ txId, operation }) {
      const key = orderKey(operation.orderId);
      if (await table.get(key)) return { vote: 'NO', reason: `order ${operation.orderId} exists` };
      const order = { orderId: operation.orderId, items: operation.items, total: operation.total, status: 'PENDING' };
      return { vote: 'YES', writes: [table.create(key, txId, order)] };
    },
    async commit({ txId, operation }) {
      return [table.transition(orderKey(operation.orderId), txId, 'PENDING', 'CONFIRMED')];
    },
    async abort({ txId, operation }) {
      return [table.transition(orderKey(operation.orderId), txId, 'PENDING', 'CANCELLED')];
    },
  });
}
