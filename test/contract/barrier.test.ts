// One contract, two adapters: the in-memory barrier store (src/memory/barrier.ts) must answer
// exactly as the DynamoDB one (src/participant/barrier-store.ts) does on dynalite: revision-
// conditioned writes, the operation as JSON, and the restart scan's selection.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { documentClient } from '../../src/aws/document-client';
import type { BarrierRecord } from '../../src/core/barrier';
import type { BarrierStorePort } from '../../src/core/ports';
import { MemoryBarrierStore } from '../../src/memory/barrier';
import { BarrierStore } from '../../src/participant/barrier-store';
import { type LocalAws, startLocalAws } from '../support/aws';

let local: LocalAws;
let tables = 0;

beforeAll(async () => {
  local = await startLocalAws({ dynamodb: true });
});

afterAll(async () => {
  await local.stop();
});

/** A fresh, empty participant table (on the one dynalite) per store. */
async function dynamoStore(): Promise<BarrierStorePort> {
  const table = await local.participantTable(`participant-${++tables}`);
  return new BarrierStore(documentClient(local.dynamodb), table, 'tester');
}

const adapters: { name: string; fresh: () => Promise<BarrierStorePort> }[] = [
  { name: 'memory', fresh: () => Promise.resolve(new MemoryBarrierStore('tester')) },
  { name: 'dynamodb (dynalite)', fresh: dynamoStore },
];

const NOW = 1_800_000_000_000;
const preparing = (runId = 'run-1'): BarrierRecord => ({ state: 'PREPARING', operation: { sku: 'a', qty: 2 }, claim: { runId, untilMs: NOW + 30_000 } });

describe.each(adapters)('BarrierStorePort on $name', ({ fresh }) => {
  let store: BarrierStorePort;
  beforeAll(async () => {
    store = await fresh();
  });

  it('answers an absent record as revision 0, NONE', async () => {
    expect(await store.read('absent')).toEqual({ rev: 0, record: { state: 'NONE' } });
  });

  it('creates on revision 0 only once, then writes only on the revision that was read', async () => {
    expect(await store.write('tx-rev', 0, preparing(), NOW)).toBe(true);
    expect(await store.write('tx-rev', 0, preparing('run-2'), NOW)).toBe(false);
    expect(await store.read('tx-rev')).toEqual({ rev: 1, record: preparing() });
    const prepared: BarrierRecord = { state: 'PREPARED', operation: { sku: 'a', qty: 2 }, vote: 'YES' };
    expect(await store.write('tx-rev', 2, prepared, NOW)).toBe(false);
    expect(await store.write('tx-rev', 1, prepared, NOW)).toBe(true);
    expect(await store.write('tx-rev', 1, { state: 'COMMITTED', operation: 1 }, NOW)).toBe(false);
    expect(await store.read('tx-rev')).toEqual({ rev: 2, record: prepared });
  });

  it('never writes a record back to NONE', async () => {
    await expect(store.write('tx-none', 0, { state: 'NONE' }, NOW)).rejects.toThrow(/never written back to NONE/);
  });

  it('gives back the operation as JSON would, and keeps it apart from what callers hold', async () => {
    const operation = { sku: 'a', missing: undefined, list: [1, undefined, 'x'], nested: { deep: [true] } };
    await store.write('tx-json', 0, { state: 'ABORTED', prepareStarted: false, operation }, NOW);
    operation.nested.deep.push(false);
    const read = await store.read('tx-json');
    expect(read).toEqual({ rev: 1, record: { state: 'ABORTED', prepareStarted: false, operation: { sku: 'a', list: [1, null, 'x'], nested: { deep: [true] } } } });
    (read.record as { operation: { sku: string } }).operation.sku = 'changed';
    expect(((await store.read('tx-json')).record as { operation: { sku: string } }).operation.sku).toBe('a');
  });

  it('stores no operation and no reason when there is none', async () => {
    await store.write('tx-bare', 0, { state: 'ABORTED', prepareStarted: true }, NOW);
    expect(await store.read('tx-bare')).toEqual({ rev: 1, record: { state: 'ABORTED', prepareStarted: true } });
    await store.write('tx-bare-vote', 0, { state: 'PREPARED', operation: undefined, vote: 'NO' }, NOW);
    expect(await store.read('tx-bare-vote')).toEqual({ rev: 1, record: { state: 'PREPARED', operation: undefined, vote: 'NO' } });
  });

  it('finds for the restart scan what is undecided, and recent records whose cleanup may not have run', async () => {
    const own = await fresh();
    const since = NOW - 60_000;
    const old = since - 1;
    const writes: [string, BarrierRecord, number][] = [
      ['preparing-old', preparing(), old],
      ['yes-old', { state: 'PREPARED', operation: 1, vote: 'YES' }, old],
      ['no-old', { state: 'PREPARED', operation: 1, vote: 'NO', reason: 'out of stock' }, old],
      ['no-recent', { state: 'PREPARED', operation: 1, vote: 'NO' }, since],
      ['readonly-recent', { state: 'PREPARED', operation: 1, vote: 'READ_ONLY' }, NOW],
      ['aborted-started-recent', { state: 'ABORTED', prepareStarted: true }, since],
      ['aborted-started-old', { state: 'ABORTED', prepareStarted: true }, old],
      ['aborted-null-recent', { state: 'ABORTED', prepareStarted: false }, NOW],
      ['committed-recent', { state: 'COMMITTED', operation: 1 }, NOW],
    ];
    for (const [txId, record, at] of writes) expect(await own.write(txId, 0, record, at)).toBe(true);
    const found = (await own.scanUnsettled(since)).sort((a, b) => a.txId.localeCompare(b.txId));
    expect(found).toEqual([
      { txId: 'aborted-started-recent', state: 'ABORTED', updatedAtMs: since },
      { txId: 'no-recent', state: 'PREPARED', vote: 'NO', updatedAtMs: since },
      { txId: 'preparing-old', state: 'PREPARING', updatedAtMs: old },
      { txId: 'readonly-recent', state: 'PREPARED', vote: 'READ_ONLY', updatedAtMs: NOW },
      { txId: 'yes-old', state: 'PREPARED', vote: 'YES', updatedAtMs: old },
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Random operation sequences: both adapters, fed the same operations, answer the same.

const TX = ['t0', 't1', 't2'];
const operation = fc.oneof(fc.constant(undefined), fc.jsonValue({ maxDepth: 2 }), fc.record({ sku: fc.string({ maxLength: 4 }), qty: fc.integer() }));
const record: fc.Arbitrary<BarrierRecord> = fc.oneof(
  fc.record({ state: fc.constant('PREPARING' as const), operation, claim: fc.record({ runId: fc.constantFrom('r1', 'r2'), untilMs: fc.integer({ min: 0, max: 100 }) }) }),
  fc.record({ state: fc.constant('PREPARED' as const), operation, vote: fc.constantFrom('YES' as const, 'NO' as const, 'READ_ONLY' as const), reason: fc.option(fc.string({ maxLength: 6 }), { nil: undefined }) }),
  fc.record({ state: fc.constant('COMMITTED' as const), operation }),
  fc.record({ state: fc.constant('ABORTED' as const), prepareStarted: fc.boolean(), operation }),
);
type Op =
  | { kind: 'write'; txId: string; revDelta: number; record: BarrierRecord; atMs: number }
  | { kind: 'read'; txId: string }
  | { kind: 'scan'; sinceMs: number };
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('write' as const), txId: fc.constantFrom(...TX), revDelta: fc.constantFrom(0, 0, 0, -1, 1), record, atMs: fc.integer({ min: 0, max: 10 }) }),
  fc.record({ kind: fc.constant('read' as const), txId: fc.constantFrom(...TX) }),
  fc.record({ kind: fc.constant('scan' as const), sinceMs: fc.integer({ min: 0, max: 11 }) }),
);

async function apply(store: BarrierStorePort, o: Op): Promise<unknown> {
  switch (o.kind) {
    case 'write': {
      // Mostly the revision just read (the protocol's write); sometimes a stale or a future one.
      const { rev } = await store.read(o.txId);
      return store.write(o.txId, Math.max(0, rev + o.revDelta), o.record, NOW + o.atMs);
    }
    case 'read':
      return store.read(o.txId);
    case 'scan':
      return (await store.scanUnsettled(NOW + o.sinceMs)).sort((a, b) => a.txId.localeCompare(b.txId));
  }
}

describe('the memory and DynamoDB barrier stores', () => {
  it('answer random operation sequences identically', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 16 }), async (ops) => {
        const memory = new MemoryBarrierStore('tester');
        const dynamo = await dynamoStore();
        for (const o of ops) expect(await apply(memory, o)).toEqual(await apply(dynamo, o));
        for (const txId of TX) expect(await memory.read(txId)).toEqual(await dynamo.read(txId));
      }),
      { numRuns: 10, seed: 20261101 },
    );
  }, 60_000);
});
