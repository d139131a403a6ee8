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
      const created = await table.createOnce(orderKey(operation.orderId), txId, {
        orderId: operation.orderId,
        items: operation.items,
        total: operation.total,
        status: 'PENDING',
      });
      if (created === 'taken') return { vote: 'NO', reason: `order ${operation.orderId} exists` };
      return { vote: 'YES' };
    },
    async commit({ txId, operation }) {
      await table.transition(orderKey(operation.orderId), txId, 'PENDING', 'CONFIRMED');
    },
    async abort({ txId, operation }) {
      await table.transition(orderKey(operation.orderId), txId, 'PENDING', 'CANCELLED');
    },
  });
}
