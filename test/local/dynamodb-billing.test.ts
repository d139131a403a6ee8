// DynamoDB's billing arithmetic against the examples and rules of AWS's documentation:
// - https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html (item sizes)
// - https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html (units per operation)
// - https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations (index reads and writes)
import { describe, expect, it } from 'vitest';
import {
  failedWriteCharges,
  indexWrites,
  itemSize,
  numberSize,
  readUnits,
  valueSize,
  writeCharges,
  writeUnits,
  type Item,
  type TableDescription,
} from '../../src/local/dynamodb-billing.mjs';

const KB = 1024;
const s = (text: string) => ({ S: text });
const n = (text: string) => ({ N: text });

describe('item size', () => {
  it('counts a string as the UTF-8 bytes of its name and of its value', () => {
    expect(itemSize({ name: s('Alice') })).toBe(4 + 5);
    // 'é' is two bytes in UTF-8, one UTF-16 code unit: the rule is bytes.
    expect(itemSize({ café: s('né') })).toBe(5 + 3);
  });

  it('counts a number as 1 byte per two significant digits plus 1, zeroes trimmed', () => {
    expect(numberSize('12345')).toBe(3 + 1);
    expect(numberSize('123.45')).toBe(3 + 1);
    expect(numberSize('1000')).toBe(1 + 1);
    expect(numberSize('0.0012')).toBe(1 + 1);
    expect(numberSize('-42')).toBe(1 + 1);
    expect(itemSize({ expiresAt: n('1796083201') })).toBe(9 + 5 + 1);
    expect(itemSize({ expiresAt: n('1796083200') })).toBe(9 + 4 + 1);
  });

  it('counts binary values by their raw bytes, not their base64 text', () => {
    expect(valueSize({ B: Buffer.from('hello').toString('base64') })).toBe(5);
  });

  it('counts null and Boolean values as 1 byte', () => {
    expect(itemSize({ ok: { BOOL: true }, gone: { NULL: true } })).toBe(2 + 1 + 4 + 1);
  });

  it('counts a list or map as 3 bytes, plus 1 byte and the size of each element', () => {
    expect(itemSize({ l: { L: [] } })).toBe(1 + 3);
    expect(itemSize({ m: { M: {} } })).toBe(1 + 3);
    // two elements: 3 + (1 + 1) + (1 + 2) with the strings 'a' and 'bc'
    expect(itemSize({ l: { L: [s('a'), s('bc')] } })).toBe(1 + 3 + (1 + 1) + (1 + 2));
    // a map element is its name and its value
    expect(itemSize({ m: { M: { k: s('v'), kk: n('7') } } })).toBe(1 + 3 + (1 + 1 + 1) + (1 + 2 + 2));
  });

  it('adds up a whole item (the item of the DynamoDbItemSizer example: 141 bytes)', () => {
    const item: Item = {
      itemType: s('SLOT'),
      id: s('abc1231'),
      hostName: s('Harry Mason'),
      timeSlot: s('February 23, 1999'),
      slotStatus: s('OPEN'),
      createdAt: s('February 1, 1999'),
      updatedAt: s('February 1, 1999'),
      expiresAt: n('2099'),
    };
    expect(itemSize(item)).toBe(141);
  });
});

describe('write units', () => {
  it('rounds a write up to the next 1 KB: 500 bytes and 512 bytes are one unit, 1.6 KB two', () => {
    expect(writeUnits(500)).toBe(1);
    expect(writeUnits(512)).toBe(1);
    expect(writeUnits(1.6 * KB)).toBe(2);
  });

  it('bills an update by the larger of the item before and after', () => {
    expect(writeUnits(900, 1100)).toBe(2);
    expect(writeUnits(1100, 900)).toBe(2);
  });

  it('bills a BatchWriteItem entry by entry: 500 bytes and 3.5 KB make 5 units, not 4', () => {
    expect(writeUnits(500) + writeUnits(3.5 * KB)).toBe(5);
  });

  it('bills at least one unit, also for deleting an item that does not exist', () => {
    expect(writeUnits(0)).toBe(1);
    expect(writeUnits()).toBe(1);
  });
});

describe('read units', () => {
  it('rounds a read up to the next 4 KB: 3.5 KB strongly consistent is one unit, 10 KB three', () => {
    expect(readUnits(3.5 * KB, true)).toBe(1);
    expect(readUnits(10 * KB, true)).toBe(3);
  });

  it('halves eventually consistent reads: 8 KB is 1 unit, 80 KB of query results 10', () => {
    expect(readUnits(8 * KB, false)).toBe(1);
    expect(readUnits(80 * KB, false)).toBe(10);
  });

  it('bills a BatchGetItem item by item: 1.5 KB and 6.5 KB read as 12 KB', () => {
    expect(readUnits(1.5 * KB, true) + readUnits(6.5 * KB, true)).toBe(3);
  });

  it('bills a Query by the summed size: 10 items of 40.8 KB read as 44 KB, 1500 items of 64 bytes as 96 KB', () => {
    expect(readUnits(40.8 * KB, true)).toBe(11);
    expect(readUnits(1500 * 64, true)).toBe(24);
  });

  it('bills a global secondary index query of 8 items of 2,000 bytes (eventually consistent) 2 units', () => {
    expect(readUnits(8 * 2000, false)).toBe(2);
  });

  it('bills a read of a missing item one half (eventually) or one (strongly consistent) unit', () => {
    expect(readUnits(0, false)).toBe(0.5);
    expect(readUnits(0, true)).toBe(1);
  });
});

// A log table like the coordinator's: key `pk`, a listing index on a constant key with a few
// attributes projected, and a sparse index of open records.
const table: TableDescription = {
  TableName: 'log',
  KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
  GlobalSecondaryIndexes: [
    {
      IndexName: 'byCreated',
      KeySchema: [
        { AttributeName: 'listPk', KeyType: 'HASH' },
        { AttributeName: 'createdAt', KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['status'] },
    },
    {
      IndexName: 'open',
      KeySchema: [
        { AttributeName: 'openPk', KeyType: 'HASH' },
        { AttributeName: 'updatedAt', KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'KEYS_ONLY' },
    },
  ],
};
const [byCreated, open] = table.GlobalSecondaryIndexes!;
const record = (extra: Item = {}): Item => ({
  pk: s('tx-1'),
  listPk: s('TX'),
  createdAt: s('2026-11-30T00:00:00.000Z'),
  openPk: s('OPEN'),
  updatedAt: s('2026-11-30T00:00:00.000Z'),
  status: s('PREPARING'),
  ...extra,
});

describe('index writes', () => {
  it('puts an item that enters the index, deletes one that leaves it', () => {
    expect(indexWrites(table, byCreated!, undefined, record())).toEqual([{ kind: 'put', key: 'TX', writeUnits: 1 }]);
    expect(indexWrites(table, byCreated!, record(), undefined)).toEqual([{ kind: 'delete', key: 'TX', writeUnits: 1 }]);
  });

  it('writes nothing when neither the index key nor a projected attribute changes', () => {
    expect(indexWrites(table, byCreated!, record(), record({ votes: s('YES') }))).toEqual([]);
  });

  it('updates in place when a projected attribute changes under the same key', () => {
    expect(indexWrites(table, byCreated!, record(), record({ status: s('COMMITTING') }))).toEqual([{ kind: 'update', key: 'TX', writeUnits: 1 }]);
    // not projected into `open` (KEYS_ONLY): nothing there
    expect(indexWrites(table, open!, record(), record({ status: s('COMMITTING') }))).toEqual([]);
  });

  it('deletes and puts when an index key attribute changes', () => {
    const later = record({ updatedAt: s('2026-11-30T00:00:01.000Z') });
    expect(indexWrites(table, open!, record(), later)).toEqual([
      { kind: 'delete', key: 'OPEN', writeUnits: 1 },
      { kind: 'put', key: 'OPEN', writeUnits: 1 },
    ]);
  });

  it('deletes from a sparse index when its key attribute is removed, and writes nothing to it afterwards', () => {
    const { openPk: _removed, ...closed } = record();
    expect(indexWrites(table, open!, record(), closed)).toEqual([{ kind: 'delete', key: 'OPEN', writeUnits: 1 }]);
    expect(indexWrites(table, open!, closed, { ...closed, status: s('COMMITTED') })).toEqual([]);
  });

  it('bills an index entry larger than 1 KB by its own size', () => {
    const big = record({ status: s('x'.repeat(1500)) });
    expect(indexWrites(table, byCreated!, undefined, big)).toEqual([{ kind: 'put', key: 'TX', writeUnits: 2 }]);
  });
});

describe('write charges', () => {
  it('charges the base table by its partition key and each index it touches by the index key', () => {
    expect(writeCharges(table, undefined, record())).toEqual([
      { index: undefined, key: 'tx-1', writeUnits: 1 },
      { index: 'byCreated', key: 'TX', writeUnits: 1 },
      { index: 'open', key: 'OPEN', writeUnits: 1 },
    ]);
  });

  it('charges twice the base-table units in a transaction', () => {
    expect(writeCharges(table, undefined, { pk: s('tx-2') }, { transactional: true })).toEqual([{ index: undefined, key: 'tx-2', writeUnits: 2 }]);
  });

  it('charges a failed conditional write by the larger of the existing and the attempted item, at least 1, no index', () => {
    const big = record({ payload: s('x'.repeat(1500)) });
    expect(failedWriteCharges(table, record(), big)).toEqual([{ index: undefined, key: 'tx-1', writeUnits: 2 }]);
    expect(failedWriteCharges(table, undefined, undefined, { pk: s('tx-3') })).toEqual([{ index: undefined, key: 'tx-3', writeUnits: 1 }]);
  });
});
