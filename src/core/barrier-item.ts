// A barrier record as one stored item, and the restart scan's rule: shared by the DynamoDB adapter
// (src/participant/barrier-store.ts) and the in-memory one (src/memory/barrier.ts), so both store,
// read back and select exactly the same thing. Pure: no I/O.
import { z } from 'zod';
import type { BarrierRecord, StoredBarrier } from './barrier';
import { type Vote, vote } from './messages';
import type { UnsettledBarrier } from './ports';

export const BARRIER_KEY_PREFIX = 'barrier#';

export function barrierKey(txId: string): string {
  return `${BARRIER_KEY_PREFIX}${txId}`;
}

const operationJson = z.string().optional();

/** The item as stored: checked on every read, so a corrupt record fails loudly instead of being guessed at. */
const barrierItem = z.discriminatedUnion('state', [
  z.object({
    state: z.literal('PREPARING'),
    rev: z.number().int().positive(),
    operationJson,
    claimRunId: z.string().min(1),
    claimUntilMs: z.number(),
  }),
  z.object({ state: z.literal('PREPARED'), rev: z.number().int().positive(), operationJson, vote, reason: z.string().optional() }),
  z.object({ state: z.literal('COMMITTED'), rev: z.number().int().positive(), operationJson }),
  z.object({ state: z.literal('ABORTED'), rev: z.number().int().positive(), operationJson, prepareStarted: z.boolean() }),
]);

/** The whole item a write of `next` at revision `rev` stores. */
export function encodeBarrier(txId: string, participant: string, rev: number, next: BarrierRecord, nowMs: number): Record<string, unknown> {
  if (next.state === 'NONE') throw new Error('a barrier record is never written back to NONE');
  return { pk: barrierKey(txId), txId, participant, rev, updatedAtMs: nowMs, ...toItem(next) };
}

/** The record a stored item holds; `where` names it in the error when the item is corrupt. */
export function decodeBarrier(raw: Record<string, unknown>, where: string): StoredBarrier {
  const parsed = barrierItem.safeParse(raw);
  if (!parsed.success) throw new Error(`barrier record ${where} is corrupt: ${parsed.error.message}`);
  const item = parsed.data;
  const operation = item.operationJson === undefined ? undefined : (JSON.parse(item.operationJson) as unknown);
  return { rev: item.rev, record: toRecord(item, operation) };
}

/**
 * The votes of a PREPARED record that still waits for phase two: YES holds its effect, and a
 * READ_ONLY voter keeps its locks until phase two reaches it (and is watched for it as a YES voter
 * is, src/participant/inquiry.ts). A NO voter holds nothing.
 */
export const AWAITING_PHASE_TWO: readonly Vote[] = ['YES', 'READ_ONLY'];

/**
 * The restart scan's rule over a stored item (its projection: txId, state, vote, updatedAtMs): the
 * undecided records, PREPARING (its run may have died) and PREPARED with a vote in
 * AWAITING_PHASE_TWO. Nothing else needs a look after a crash: an effect is written only with the
 * barrier state that records it, so no cleanup can have been cut short. The DynamoDB adapter sends
 * the same rule as a FilterExpression built from AWAITING_PHASE_TWO, and reads what comes back
 * through this function.
 */
export function unsettled(item: Record<string, unknown>): UnsettledBarrier | undefined {
  if (typeof item.pk !== 'string' || !item.pk.startsWith(BARRIER_KEY_PREFIX) || typeof item.txId !== 'string') return undefined;
  const state = item.state;
  if (state !== 'PREPARING' && !(state === 'PREPARED' && AWAITING_PHASE_TWO.includes(item.vote as Vote))) return undefined;
  return { txId: item.txId, state, ...(typeof item.vote === 'string' ? { vote: item.vote as UnsettledBarrier['vote'] } : {}), updatedAtMs: Number(item.updatedAtMs ?? 0) };
}

function toRecord(item: z.infer<typeof barrierItem>, operation: unknown): BarrierRecord {
  switch (item.state) {
    case 'PREPARING':
      return { state: 'PREPARING', operation, claim: { runId: item.claimRunId, untilMs: item.claimUntilMs } };
    case 'PREPARED':
      return { state: 'PREPARED', operation, vote: item.vote, ...(item.reason === undefined ? {} : { reason: item.reason }) };
    case 'COMMITTED':
      return { state: 'COMMITTED', operation };
    case 'ABORTED':
      return { state: 'ABORTED', prepareStarted: item.prepareStarted, ...(operation === undefined ? {} : { operation }) };
  }
}

// The operation is kept as a JSON string: it is opaque to the barrier, and DynamoDB's type mapping
// (empty sets, number precision, undefined members) must not change what user code gets back.
function toItem(record: Exclude<BarrierRecord, { state: 'NONE' }>): Record<string, unknown> {
  const operationJson = 'operation' in record && record.operation !== undefined ? { operationJson: JSON.stringify(record.operation) } : {};
  switch (record.state) {
    case 'PREPARING':
      return { state: record.state, ...operationJson, claimRunId: record.claim.runId, claimUntilMs: record.claim.untilMs };
    case 'PREPARED':
      return { state: record.state, ...operationJson, vote: record.vote, ...(record.reason === undefined ? {} : { reason: record.reason }) };
    case 'COMMITTED':
      return { state: record.state, ...operationJson };
    case 'ABORTED':
      return { state: record.state, ...operationJson, prepareStarted: record.prepareStarted };
  }
}
