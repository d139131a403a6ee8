// Payment: an account balance in integer cents, held at prepare, charged at commit, released at abort.
import { z } from 'zod';
import { type Participant, defineParticipant } from '../participant/define';
import type { DemoTable, HoldFields } from './records';

export const accountId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, _ or -');

export const paymentOperation = z.object({
  account: accountId,
  amount: z.number().int().positive().max(1_000_000_000),
});
export type PaymentOperation = z.infer<typeof paymentOperation>;

export const PAYMENT_FIELDS: HoldFields = { free: 'balance', held: 'held', done: 'charged' };

export const accountKey = (account: string): string => `acct#${account}`;

export function paymentParticipant(table: DemoTable): Participant {
  return defineParticipant<PaymentOperation>({
    service: 'payment',
    operation: paymentOperation,
    async prepare({ txId, operation: { account, amount } }) {
      const refusal = await table.holdRefusal(accountKey(account), amount, PAYMENT_FIELDS);
      if (refusal?.kind === 'unknown') return { vote: 'NO', reason: `unknown account ${account}` };
      if (refusal?.kind === 'short') return { vote: 'NO', reason: `insufficient funds in ${account}: balance ${refusal.free}, amount ${amount}` };
      return { vote: 'YES', writes: [table.placeHold(accountKey(account), txId, amount, PAYMENT_FIELDS)] };
    },
    async commit({ txId, operation: { account, amount } }) {
      return [table.consumeHold(accountKey(account), txId, amount, PAYMENT_FIELDS)];
    },
    async abort({ txId, operation: { account, amount } }) {
      return [table.releaseHold(accountKey(account), txId, amount, PAYMENT_FIELDS)];
    },
  });
}
