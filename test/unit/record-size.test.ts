// Issue 10, item 5: a 4-participant demo order's log record stays under 1 KB over its whole life, so
// every write to it costs one write unit (an update bills the larger of the item before and after).
// The record is measured at every step (created, each vote, decided, each ack, in doubt, parked,
// finished) as the coordinator writes it, with realistic ids (UUIDs) and timestamps, by DynamoDB's
// item size rules, also with a NO reason of the longest a vote may carry.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MAX_REASON_CHARS } from '../../src/core/messages';
import { RECORDED_REASON_CHARS, type TxRecord } from '../../src/core/transaction';
import { SERVICES, iso, memoryStack } from './memory-stack';

const ORDER = JSON.parse(readFileSync(new URL('../../examples/order.json', import.meta.url), 'utf8')) as { participants: { service: string; operation: unknown }[] };
const KB = 1024;

/**
 * An item's size as DynamoDB bills it (developer guide, "Item sizes and formats"): per attribute its
 * name's UTF-8 bytes plus its value's size. A string: its UTF-8 bytes. A number: 1 byte per two
 * significant digits (leading and trailing zeros trimmed) plus 1. A boolean or null: 1. A map or a
 * list: 3 bytes plus its elements (a map's keys counted as names), plus 1 byte per element.
 */
export function dynamoItemSize(item: Record<string, unknown>): number {
  return Object.entries(item).reduce((sum, [name, value]) => (value === undefined ? sum : sum + Buffer.byteLength(name, 'utf8') + valueSize(value)), 0);
}

function valueSize(value: unknown): number {
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8');
  if (typeof value === 'number') {
    const digits = Math.abs(value).toExponential().split('e')[0]!.replace('.', '').replace(/^0+|0+$/g, '');
    return Math.ceil(Math.max(1, digits.length) / 2) + 1;
  }
  if (typeof value === 'boolean' || value === null) return 1;
  if (Array.isArray(value)) return 3 + value.reduce((sum: number, v) => sum + 1 + valueSize(v), 0);
  if (typeof value === 'object') {
    return 3 + Object.entries(value as Record<string, unknown>).reduce((sum, [k, v]) => (v === undefined ? sum : sum + 1 + Buffer.byteLength(k, 'utf8') + valueSize(v)), 0);
  }
  throw new Error(`no DynamoDB size for ${typeof value}`);
}

describe('dynamoItemSize', () => {
  it('counts names and values by the rules', () => {
    expect(dynamoItemSize({ pk: 'abc' })).toBe(2 + 3);
    expect(dynamoItemSize({ n: 1_795_780_805_000 })).toBe(1 + 6); // 10 significant digits
    expect(dynamoItemSize({ n: 4 })).toBe(1 + 2);
    expect(dynamoItemSize({ m: {} })).toBe(1 + 3);
    expect(dynamoItemSize({ m: { a: 'xy' } })).toBe(1 + 3 + 1 + 1 + 2);
    expect(dynamoItemSize({ l: ['a', true] })).toBe(1 + 3 + (1 + 1) + (1 + 1));
    expect(dynamoItemSize({ s: 'é' })).toBe(1 + 2);
  });
});

describe('the log record of a 4-participant demo order', () => {
  /** A UUID-shaped id, like systemIds makes, deterministic here. */
  const uuid = (n: number) => `${n.toString(16).padStart(8, '0')}-4f1c-4b7a-9d2e-0c5a6b7d8e9f`;

  /**
   * One transaction's life through the coordinator: created, each vote (the last one YES or a NO with
   * `reason`), decided, optionally every YES voter found in doubt and the transaction parked, each
   * acknowledgement, finished. Answers the record's size after every step.
   */
  const life = async (lastVote: 'YES' | 'NO', options: { reason?: string; doubt?: boolean } = {}) => {
    let n = 0;
    const s = memoryStack({ supervise: false, newId: () => uuid(++n) });
    const sizes: { step: string; bytes: number }[] = [];
    let txId = '';
    const measure = (step: string) => {
      const record: TxRecord = s.record(txId);
      sizes.push({ step, bytes: dynamoItemSize(record as unknown as Record<string, unknown>) });
      return record;
    };
    txId = await s.start({ ...ORDER, timeouts: { prepareSeconds: 900, commitSeconds: 3600 } }, uuid(999_999));
    expect(txId).toHaveLength(36);
    const created = measure('created');
    expect(created.services).toEqual(SERVICES);
    expect(created.idempotencyKey).toHaveLength(36);
    let decided: TxRecord | undefined;
    for (const [i, p] of SERVICES.entries()) {
      await s.timers.advanceTo(s.now() + 37 + i);
      const vote = i === SERVICES.length - 1 ? lastVote : 'YES';
      await s.vote(txId, p, vote, vote === 'NO' ? (options.reason ?? 'insufficient stock for sku-1: 1 available, 2 requested') : undefined);
      // The last vote decides in the same call: its step is the decided record.
      decided = measure(i === SERVICES.length - 1 ? `${p} voted ${vote}, decided` : `${p} voted ${vote}`);
    }
    expect(decided!.decision).toBe(lastVote === 'YES' ? 'COMMIT' : 'ABORT');
    if (options.reason !== undefined) {
      expect(decided!.votes.order?.reason).toHaveLength(RECORDED_REASON_CHARS);
      expect(decided!.decisionReason).toBe('order voted NO');
    }
    const phase = decided!.decision!;
    const owing = SERVICES.filter((p) => decided!.votes[p]?.vote === 'YES');
    if (options.doubt) {
      // The longest a record gets: every unacknowledged participant found in doubt, and parked.
      expect((await s.log.markInDoubt(txId, phase, iso(s.now() + 3_600_000 * 3))).applied).toBe(true);
      measure('in doubt');
      expect((await s.log.park(txId, phase, owing[0]!)).applied).toBe(true);
      measure('parked');
    }
    for (const [i, p] of owing.entries()) {
      await s.timers.advanceTo(s.now() + 1_234);
      await s.ack(txId, p, phase);
      // The last acknowledgement finishes in the same call.
      measure(i === owing.length - 1 ? `${p} acknowledged, finished` : `${p} acknowledged`);
    }
    expect(s.record(txId).status).toBe(lastVote === 'YES' ? 'COMMITTED' : 'ABORTED');
    return sizes;
  };
  const underOneKb = (sizes: { step: string; bytes: number }[]) => {
    for (const { step, bytes } of sizes) expect({ step, bytes, under: bytes < KB }).toEqual({ step, bytes, under: true });
  };

  it('stays under 1 KB at every step of a commit', async () => {
    const sizes = await life('YES');
    expect(sizes.map((x) => x.step)).toEqual([
      'created',
      'inventory voted YES',
      'payment voted YES',
      'shipping voted YES',
      'order voted YES, decided',
      'inventory acknowledged',
      'payment acknowledged',
      'shipping acknowledged',
      'order acknowledged, finished',
    ]);
    underOneKb(sizes);
  });

  it('stays under 1 KB at every step of an abort by a NO with a typical reason', async () => {
    underOneKb(await life('NO'));
  });

  // The clipped reason (RECORDED_REASON_CHARS) is kept once, in the vote; the decision only names the NO voter.
  it('stays under 1 KB at every step of an abort by a NO with the longest reason a vote may carry', async () => {
    underOneKb(await life('NO', { reason: 'r'.repeat(MAX_REASON_CHARS) }));
  });

  // The longest a commit gets: every participant found in doubt (one time for all) and parked.
  it('stays under 1 KB at every step of a commit whose participants were all found in doubt and parked', async () => {
    underOneKb(await life('YES', { doubt: true }));
  });

  it('keeps the operations out of the record: they are written once, in an item of their own', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(ORDER);
    expect(JSON.stringify(s.record(txId))).not.toContain('sku-1');
    expect(JSON.parse((await s.log.getOps(txId))!.participants)).toEqual(ORDER.participants);
  });
});
