// DynamoDB's billing arithmetic, as AWS documents it: item sizes, write and read request units, and
// the writes a table write causes in each secondary index. Pure functions over the wire format
// (`{ S: 'x' }`, `{ N: '1' }` ...), so the embedded DynamoDB's worker (dynamodb-worker.mjs) charges
// every request it serves by them. Plain JavaScript: the worker loads it under `node --import tsx`
// and vitest alike; dynamodb-billing.d.mts gives TypeScript its types.
//
// Sources (all https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/):
// - item sizes:      CapacityUnitCalculations.html ("DynamoDB item sizes and formats")
// - units per call:  read-write-operations.html (and the older ProvisionedThroughput.html wording)
// - index writes:    GSI.html#GSI.ThroughputConsiderations.Writes
// - transactions:    transaction-apis.html (capacity management: 2 units per 1 KB written in a transaction)

/** A write request unit covers up to 1 KB written; a read request unit 4 KB read strongly consistent. */
export const WRITE_UNIT_BYTES = 1024;
export const READ_UNIT_BYTES = 4096;

const utf8 = (s) => Buffer.byteLength(s, 'utf8');

/**
 * A number's size: "approximately 1 byte per two significant digits, plus 1 byte", leading and
 * trailing zeroes trimmed. The sign and the exponent are not significant digits.
 */
export function numberSize(text) {
  const mantissa = String(text).trim().replace(/^[+-]/, '').split(/e/i)[0] ?? '';
  const digits = mantissa.replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
  return Math.ceil(digits.length / 2) + 1;
}

/** The size of one attribute value (without its name). */
export function valueSize(value) {
  const [type, v] = Object.entries(value)[0] ?? [];
  switch (type) {
    case 'S':
      return utf8(v);
    case 'N':
      return numberSize(v);
    case 'B':
      return Buffer.from(v, 'base64').length;
    case 'BOOL':
    case 'NULL':
      return 1;
    case 'SS':
      return v.reduce((sum, s) => sum + utf8(s), 0);
    case 'NS':
      return v.reduce((sum, n) => sum + numberSize(n), 0);
    case 'BS':
      return v.reduce((sum, b) => sum + Buffer.from(b, 'base64').length, 0);
    // Lists and maps: 3 bytes of overhead, and 1 byte per element (a map's element is its name and value).
    case 'L':
      return 3 + v.reduce((sum, e) => sum + 1 + valueSize(e), 0);
    case 'M':
      return 3 + Object.entries(v).reduce((sum, [name, e]) => sum + 1 + utf8(name) + valueSize(e), 0);
    default:
      throw new Error(`not a DynamoDB attribute value: ${JSON.stringify(value)}`);
  }
}

/** An item's size: the UTF-8 bytes of every attribute name plus the size of its value. No item: 0. */
export function itemSize(item) {
  if (!item) return 0;
  let size = 0;
  for (const [name, value] of Object.entries(item)) size += utf8(name) + valueSize(value);
  return size;
}

/** Write units for a write that sees these item sizes: the larger, in 1 KB steps, at least 1. */
export function writeUnits(...sizes) {
  return Math.max(1, Math.ceil(Math.max(0, ...sizes) / WRITE_UNIT_BYTES));
}

/**
 * Read units for `bytes` read in one operation (a GetItem's item, a Query's or Scan's items summed):
 * 4 KB steps, at least one step (a read of nothing still costs it), half for eventually consistent.
 */
export function readUnits(bytes, consistent) {
  const steps = Math.max(1, Math.ceil(bytes / READ_UNIT_BYTES));
  return consistent ? steps : steps / 2;
}

/** The partition key value of `item` under `keySchema`, as text; undefined when the item lacks it. */
export function partitionKeyValue(item, keySchema) {
  const name = keySchema.find((k) => k.KeyType === 'HASH')?.AttributeName;
  const value = name && item ? item[name] : undefined;
  if (!value) return undefined;
  return String(value.S ?? value.N ?? value.B);
}

/** Every secondary index of a table description, global and local alike (both are written the same way). */
export function secondaryIndexes(table) {
  return [...(table.GlobalSecondaryIndexes ?? []), ...(table.LocalSecondaryIndexes ?? [])];
}

/** The item as `index` holds it: the table's and the index's keys plus the projected attributes; undefined when the item is not in the index. */
export function indexEntry(item, table, index) {
  if (!item) return undefined;
  const indexKeys = index.KeySchema.map((k) => k.AttributeName);
  if (!indexKeys.every((k) => item[k] !== undefined)) return undefined;
  if (index.Projection?.ProjectionType === 'ALL') return item;
  const names = [...table.KeySchema.map((k) => k.AttributeName), ...indexKeys, ...(index.Projection?.NonKeyAttributes ?? [])];
  const entry = {};
  for (const name of names) if (item[name] !== undefined) entry[name] = item[name];
  return entry;
}

/** Two attribute values (or items) are the same: maps and sets compare regardless of order. */
export function sameValue(a, b) {
  if (a === b) return true;
  if (!a || !b) return false;
  const [ta, va] = Object.entries(a)[0] ?? [];
  const [tb, vb] = Object.entries(b)[0] ?? [];
  if (ta !== tb) return false;
  switch (ta) {
    case 'L':
      return va.length === vb.length && va.every((e, i) => sameValue(e, vb[i]));
    case 'M':
      return sameItem(va, vb);
    case 'SS':
    case 'NS':
    case 'BS':
      return va.length === vb.length && [...va].sort().join('\u0000') === [...vb].sort().join('\u0000');
    default:
      return va === vb;
  }
}

export function sameItem(a, b) {
  if (a === b) return true;
  if (!a || !b) return false;
  const names = Object.keys(a);
  return names.length === Object.keys(b).length && names.every((n) => b[n] !== undefined && sameValue(a[n], b[n]));
}

/**
 * The writes one table write causes in `index`, as AWS bills them: entering the index is one put,
 * leaving it one delete, a changed index key a delete and a put, a change of projected attributes
 * under the same key one update (the larger entry), and anything else nothing.
 * Returns [{ kind, key, writeUnits }] with `key` the index partition key value written.
 */
export function indexWrites(table, index, before, after) {
  const old = indexEntry(before, table, index);
  const now = indexEntry(after, table, index);
  const keyOf = (entry) => partitionKeyValue(entry, index.KeySchema);
  const put = () => ({ kind: 'put', key: keyOf(now), writeUnits: writeUnits(itemSize(now)) });
  const del = () => ({ kind: 'delete', key: keyOf(old), writeUnits: writeUnits(itemSize(old)) });
  if (!old && !now) return [];
  if (!old) return [put()];
  if (!now) return [del()];
  const keyChanged = index.KeySchema.some((k) => !sameValue(old[k.AttributeName], now[k.AttributeName]));
  if (keyChanged) return [del(), put()];
  if (sameItem(old, now)) return [];
  return [{ kind: 'update', key: keyOf(now), writeUnits: writeUnits(itemSize(old), itemSize(now)) }];
}

/**
 * What a successful write of one item costs: the base table (the larger of the item before and
 * after, in 1 KB steps, at least 1; twice that in a transaction) and every index it touches.
 * Returns [{ index, key, writeUnits }], `index` undefined for the base table. `options.key` names
 * the item when there is none before or after (a delete of a missing item).
 */
export function writeCharges(table, before, after, options = {}) {
  const multiplier = options.transactional ? 2 : 1;
  const keyItem = after ?? before ?? options.key;
  const charges = [{ index: undefined, key: partitionKeyValue(keyItem, table.KeySchema), writeUnits: multiplier * writeUnits(itemSize(before), itemSize(after)) }];
  for (const index of secondaryIndexes(table)) {
    for (const w of indexWrites(table, index, before, after)) charges.push({ index: index.IndexName, key: w.key, writeUnits: w.writeUnits });
  }
  return charges;
}

/**
 * What a write whose condition failed costs: the base table only, by the larger of the existing
 * item and the item the request tried to write (when the request carries it whole: PutItem), at
 * least 1 unit; no index is written.
 */
export function failedWriteCharges(table, existing, attempted, key) {
  return [{ index: undefined, key: partitionKeyValue(existing ?? attempted ?? key, table.KeySchema), writeUnits: writeUnits(itemSize(existing), itemSize(attempted)) }];
}

/**
 * What a ConditionCheck of a committed TransactWriteItems costs: it writes nothing, and AWS bills it
 * as a transactional write of the item checked: twice its size in 1 KB steps, at least 2 units.
 */
export function conditionCheckCharges(table, existing, key) {
  return [{ index: undefined, key: partitionKeyValue(existing ?? key, table.KeySchema), writeUnits: 2 * writeUnits(itemSize(existing)) }];
}

/** Read units for one item read by TransactGetItems: always strongly consistent, and twice that. */
export function transactionalReadUnits(item) {
  return 2 * readUnits(itemSize(item), true);
}

/** The item's top-level scalar attributes as plain values (strings, numbers as text, booleans), for listeners. */
export function plainItem(item) {
  const plain = {};
  for (const [name, value] of Object.entries(item ?? {})) {
    if (value.S !== undefined) plain[name] = value.S;
    else if (value.N !== undefined) plain[name] = value.N;
    else if (value.BOOL !== undefined) plain[name] = value.BOOL;
  }
  return plain;
}
