// The participants' user code in the simulation: services that lock several resources in the
// order an operation lists them (so transactions deadlock), hold stock per transaction (txId-keyed),
// and turn the hold into a sale on commit or give it back on abort. Like a DynamoDB participant's,
// the handlers only build their effect (MemoryWrites); the barrier store applies it atomically with
// the barrier transition that records it. Their data is in memory and survives crashes (it is the service's database); what each
// handler does is written to a journal that the invariant checks read.
import { z } from 'zod';
import { defineParticipant, type Participant } from '../../src/participant/define';
import type { MemoryWrite } from '../../src/memory/barrier';

export const operationSchema = z.object({
  /** Resources of this service, locked in this order. */
  items: z.array(z.object({ resource: z.string(), amount: z.number().int().positive() })).min(1),
  /** The service votes NO whatever its stock (a business refusal). */
  refuse: z.boolean().optional(),
  /** The service only reads: it votes READ_ONLY, holds nothing and takes no part in phase two. */
  readOnly: z.boolean().optional(),
});
export type ModelOperation = z.infer<typeof operationSchema>;

export interface Stock {
  available: number;
  /** txId -> amount held for it. */
  holds: Map<string, number>;
  sold: number;
  /** txId -> amount sold to it (a second sale for one txId is an exactly-once violation). */
  sales: Map<string, number>;
  /** The highest fencing token a write carried; an older one is refused. */
  token: number;
}

export type JournalEntry =
  /** `late`: the prepare began after the message's deadline by the participant's own clock. */
  | { kind: 'prepare-start'; service: string; txId: string; at: number; late: boolean }
  | { kind: 'prepared'; service: string; txId: string; vote: string; at: number }
  | { kind: 'commit'; service: string; txId: string; at: number }
  /** `decision`: what the log said when the user's abort ran (undefined: nothing decided yet). */
  | { kind: 'abort'; service: string; txId: string; at: number; decision: string | undefined }
  | { kind: 'fence-refused'; service: string; txId: string; resource: string; token: number; seen: number; at: number };

export interface ModelShop {
  services: string[];
  stock: Map<string, Stock>;
  initial: Map<string, number>;
  journal: JournalEntry[];
  participants: Map<string, Participant<MemoryWrite>>;
}

export function resourceKey(service: string, resource: string): string {
  return `${service}/${resource}`;
}

export interface ShopClocks {
  /** Virtual time (the journal's order). */
  now: () => number;
  /** A service's host clock (its skew included). */
  clockOf: (service: string) => () => number;
  /** What the log has decided for a transaction right now (the checks' view, not the participant's). */
  decisionOf: (txId: string) => string | undefined;
}

export function createShop(services: string[], resourcesPerService: number, initialStock: number, clocks: ShopClocks): ModelShop {
  const stock = new Map<string, Stock>();
  const initial = new Map<string, number>();
  for (const service of services) {
    for (let r = 0; r < resourcesPerService; r++) {
      const key = resourceKey(service, `r${r}`);
      stock.set(key, { available: initialStock, holds: new Map(), sold: 0, sales: new Map(), token: 0 });
      initial.set(key, initialStock);
    }
  }
  const shop: ModelShop = { services, stock, initial, journal: [], participants: new Map() };
  for (const service of services) shop.participants.set(service, modelParticipant(shop, service, clocks));
  return shop;
}

function modelParticipant(shop: ModelShop, service: string, { now, clockOf, decisionOf }: ShopClocks): Participant<MemoryWrite> {
  const clock = clockOf(service);
  const get = (resource: string): Stock => {
    const s = shop.stock.get(resourceKey(service, resource));
    if (!s) throw new Error(`unknown resource ${service}/${resource}`);
    return s;
  };
  /** The writes that take txId's hold off each of the operation's resources and hand it to `to`; `journal` runs when they land. */
  const settle = (txId: string, operation: ModelOperation, journal: () => void, to: (stock: Stock, held: number) => void): MemoryWrite[] => [
    { apply: journal },
    ...operation.items.map(({ resource }) => ({
      apply: () => {
        const stock = get(resource);
        const held = stock.holds.get(txId);
        if (held === undefined) return;
        stock.holds.delete(txId);
        to(stock, held);
      },
    })),
  ];
  return defineParticipant<ModelOperation, MemoryWrite>({
    service,
    operation: operationSchema,
    async prepare({ txId, operation, lock, deadlineAt }) {
      shop.journal.push({ kind: 'prepare-start', service, txId, at: now(), late: clock() >= deadlineAt });
      if (operation.refuse) return { vote: 'NO', reason: 'refused' };
      if (operation.readOnly) {
        shop.journal.push({ kind: 'prepared', service, txId, vote: 'READ_ONLY', at: now() });
        return { vote: 'READ_ONLY' };
      }
      const writes: MemoryWrite[] = [];
      for (const { resource, amount } of operation.items) {
        if (!lock) throw new Error('the simulation gives every participant a lock service');
        const grant = await lock(resourceKey(service, resource));
        const stock = get(resource);
        // Fencing: the write carries the grant's token; an older token than one seen is refused.
        if (grant.token < stock.token) {
          shop.journal.push({ kind: 'fence-refused', service, txId, resource, token: grant.token, seen: stock.token, at: now() });
          return { vote: 'NO', reason: `stale fencing token ${grant.token} < ${stock.token}` };
        }
        if (stock.available < amount) return { vote: 'NO', reason: `insufficient stock for ${resource}` };
        // The hold lands with the barrier's PREPARED, under the conditions this read relied on.
        writes.push({
          check: () =>
            grant.token < stock.token ? `stale fencing token ${grant.token} < ${stock.token}` : stock.available < amount ? `insufficient stock for ${resource}` : stock.holds.has(txId) ? `${txId} holds ${resource} already` : undefined,
          apply: () => {
            stock.token = grant.token;
            stock.available -= amount;
            stock.holds.set(txId, amount);
          },
        });
      }
      writes.push({ apply: () => void shop.journal.push({ kind: 'prepared', service, txId, vote: 'YES', at: now() }) });
      return { vote: 'YES', writes };
    },
    async commit({ txId, operation }) {
      return settle(
        txId,
        operation,
        () => void shop.journal.push({ kind: 'commit', service, txId, at: now() }),
        (stock, held) => {
          stock.sold += held;
          stock.sales.set(txId, (stock.sales.get(txId) ?? 0) + held);
        },
      );
    },
    async abort({ txId, operation }) {
      return settle(
        txId,
        operation,
        () => void shop.journal.push({ kind: 'abort', service, txId, at: now(), decision: decisionOf(txId) }),
        (stock, held) => void (stock.available += held),
      );
    },
  });
}
