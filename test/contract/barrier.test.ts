// One contract, two adapters: the in-memory barrier store (src/memory/barrier.ts) must answer
// exactly as the DynamoDB one (src/participant/barrier-store.ts) does on the embedded DynamoDB:
// revision-conditioned writes, the user's effect written with the barrier all or nothing (a
// TransactWriteItems there, MemoryWrites here), the operation as JSON, and the restart scan.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { documentClient } from '../../src/aws/document-client';
import type { BarrierRecord } from '../../src/core/barrier';
import type { BarrierStorePort } from '../../src/core/ports';
import { MemoryBarrierStore, type MemoryWrite } from '../../src/memory/barrier';
import { BarrierStore, type TransactWrite } from '../../src/participant/barrier-store';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { type LocalAws, startLocalAws } from '../support/aws';

let local: LocalAws;
let tables = 0;

beforeAll(async () => {
  local = await startLocalAws({ dynamodb: true });
});

afterAll(async () => {
  await local.stop();
});

/**
 * A store and the participant's data beside it: counters, each raised by an effect write that is
 * conditional on the counter's current value (0: absent), in the store's own kind of write.
 */
interface Fixture {
  store: BarrierStorePort<unknown>;
  raise(key: string, ifValue: number): unknown;
  counter(key: string): Promise<number>;
}

async function dynamoFixture(): Promise<Fixture> {
  const table = await local.participantTable(`participant-${++tables}`);
  const doc = documentClient(local.dynamodb);
  return {
    store: new BarrierStore(doc, table, 'tester') as BarrierStorePort<unknown>,
    raise: (key, ifValue): TransactWrite => ({
      Update: {
        TableName: table,
        Key: { pk: `counter#${key}` },
        UpdateExpression: 'ADD n :one',
        ConditionExpression: ifValue === 0 ? 'attribute_not_exists(n)' : 'n = :v',
        ExpressionAttributeValues: { ':one': 1, ...(ifValue === 0 ? {} : { ':v': ifValue }) },
      },
    }),
    counter: async (key) => Number((await doc.send(new GetCommand({ TableName: table, Key: { pk: `counter#${key}` }, ConsistentRead: true }))).Item?.n ?? 0),
  };
}

function memoryFixture(): Fixture {
  const counters = new Map<string, number>();
  return {
    store: new MemoryBarrierStore('tester') as BarrierStorePort<unknown>,
    raise: (key, ifValue): MemoryWrite => ({
      check: () => ((counters.get(key) ?? 0) === ifValue ? undefined : `counter ${key} is not ${ifValue}`),
      apply: () => void counters.set(key, (counters.get(key) ?? 0) + 1),
    }),
    counter: async (key) => counters.get(key) ?? 0,
  };
}

const adapters: { name: string; fresh: () => Promise<Fixture> }[] = [
  { name: 'memory', fresh: () => Promise.resolve(memoryFixture()) },
  { name: 'dynamodb (embedded)', fresh: dynamoFixture },
];

const NOW = 1_800_000_000_000;
const preparing = (runId = 'run-1'): BarrierRecord => ({ state: 'PREPARING', operation: { sku: 'a', qty: 2 }, claim: { runId, untilMs: NOW + 30_000 } });

describe.each(adapters)('BarrierStorePort on $name', ({ fresh }) => {
  let store: BarrierStorePort<unknown>;
  let fixture: Fixture;
  beforeAll(async () => {
    fixture = await fresh();
    store = fixture.store;
  });

  it('writes the effect with the barrier record, all or nothing', async () => {
    const { raise, counter } = fixture;
    expect(await store.write('tx-effect', 0, preparing(), NOW)).toEqual({ kind: 'written' });
    const prepared: BarrierRecord = { state: 'PREPARED', operation: 1, vote: 'YES' };
    // On a stale revision: nothing, neither the record nor the effect.
    expect(await store.write('tx-effect', 0, prepared, NOW, [raise('a', 0), raise('b', 0)])).toEqual({ kind: 'moved' });
    // One condition of the effect fails: nothing either.
    expect(await store.write('tx-effect', 1, prepared, NOW, [raise('a', 0), raise('b', 7)])).toMatchObject({ kind: 'rejected', reason: expect.any(String) });
    expect([await counter('a'), await counter('b')]).toEqual([0, 0]);
    expect((await store.read('tx-effect')).rev).toBe(1);
    // On the revision read and every condition holding: the record and the whole effect.
    expect(await store.write('tx-effect', 1, prepared, NOW, [raise('a', 0), raise('b', 0)])).toEqual({ kind: 'written' });
    expect([await counter('a'), await counter('b')]).toEqual([1, 1]);
    expect(await store.read('tx-effect')).toEqual({ rev: 2, record: prepared });
    // A late writer of the same effect on the old revision changes nothing.
    expect(await store.write('tx-effect', 1, prepared, NOW, [raise('a', 1)])).toEqual({ kind: 'moved' });
    expect(await counter('a')).toBe(1);
  });

  it('answers an absent record as revision 0, NONE', async () => {
    expect(await store.read('absent')).toEqual({ rev: 0, record: { state: 'NONE' } });
  });

  it('creates on revision 0 only once, then writes only on the revision that was read', async () => {
    expect(await store.write('tx-rev', 0, preparing(), NOW)).toEqual({ kind: 'written' });
    expect(await store.write('tx-rev', 0, preparing('run-2'), NOW)).toEqual({ kind: 'moved' });
    expect(await store.read('tx-rev')).toEqual({ rev: 1, record: preparing() });
    const prepared: BarrierRecord = { state: 'PREPARED', operation: { sku: 'a', qty: 2 }, vote: 'YES' };
    expect(await store.write('tx-rev', 2, prepared, NOW)).toEqual({ kind: 'moved' });
    expect(await store.write('tx-rev', 1, prepared, NOW)).toEqual({ kind: 'written' });
    expect(await store.write('tx-rev', 1, { state: 'COMMITTED', operation: 1 }, NOW)).toEqual({ kind: 'moved' });
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

  it('finds for the restart scan what is undecided: PREPARING and PREPARED(YES or READ_ONLY), however old', async () => {
    const { store: own } = await fresh();
    const old = NOW - 86_400_000;
    const writes: [string, BarrierRecord, number][] = [
      ['preparing-old', preparing(), old],
      ['yes-old', { state: 'PREPARED', operation: 1, vote: 'YES' }, old],
      ['yes-recent', { state: 'PREPARED', operation: 1, vote: 'YES' }, NOW],
      ['no-recent', { state: 'PREPARED', operation: 1, vote: 'NO', reason: 'out of stock' }, NOW],
      ['readonly-recent', { state: 'PREPARED', operation: 1, vote: 'READ_ONLY' }, NOW],
      ['aborted-started-recent', { state: 'ABORTED', prepareStarted: true }, NOW],
      ['aborted-null-recent', { state: 'ABORTED', prepareStarted: false }, NOW],
      ['committed-recent', { state: 'COMMITTED', operation: 1 }, NOW],
    ];
    for (const [txId, record, at] of writes) expect(await own.write(txId, 0, record, at)).toEqual({ kind: 'written' });
    const found = (await own.scanUnsettled()).sort((a, b) => a.txId.localeCompare(b.txId));
    expect(found).toEqual([
      { txId: 'preparing-old', state: 'PREPARING', updatedAtMs: old },
      { txId: 'readonly-recent', state: 'PREPARED', vote: 'READ_ONLY', updatedAtMs: NOW },
      { txId: 'yes-old', state: 'PREPARED', vote: 'YES', updatedAtMs: old },
      { txId: 'yes-recent', state: 'PREPARED', vote: 'YES', updatedAtMs: NOW },
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
  | { kind: 'write'; txId: string; revDelta: number; record: BarrierRecord; atMs: number; effect: { key: string; ifValue: number }[] }
  | { kind: 'read'; txId: string }
  | { kind: 'scan' };
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('write' as const),
    txId: fc.constantFrom(...TX),
    revDelta: fc.constantFrom(0, 0, 0, -1, 1),
    record,
    atMs: fc.integer({ min: 0, max: 10 }),
    effect: fc.uniqueArray(fc.record({ key: fc.constantFrom('x', 'y'), ifValue: fc.integer({ min: 0, max: 2 }) }), { maxLength: 2, selector: (e) => e.key }),
  }),
  fc.record({ kind: fc.constant('read' as const), txId: fc.constantFrom(...TX) }),
  fc.record({ kind: fc.constant('scan' as const) }),
);

async function apply({ store, raise, counter }: Fixture, o: Op): Promise<unknown> {
  switch (o.kind) {
    case 'write': {
      // Mostly the revision just read (the protocol's write); sometimes a stale or a future one.
      const { rev } = await store.read(o.txId);
      const result = await store.write(o.txId, Math.max(0, rev + o.revDelta), o.record, NOW + o.atMs, o.effect.map((e) => raise(e.key, e.ifValue)));
      // The adapters word a rejection differently; what happened must be the same.
      return { kind: result.kind, x: await counter('x'), y: await counter('y') };
    }
    case 'read':
      return store.read(o.txId);
    case 'scan':
      return (await store.scanUnsettled()).sort((a, b) => a.txId.localeCompare(b.txId));
  }
}

describe('the memory and DynamoDB barrier stores', () => {
  it('answer random operation sequences identically', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 16 }), async (ops) => {
        const memory = memoryFixture();
        const dynamo = await dynamoFixture();
        for (const o of ops) expect(await apply(memory, o)).toEqual(await apply(dynamo, o));
        for (const txId of TX) expect(await memory.store.read(txId)).toEqual(await dynamo.store.read(txId));
      }),
      { numRuns: 10, seed: 20261101 },
    );
  }, 60_000);
});
