// Time to live on dynalite: UpdateTimeToLive, DescribeTimeToLive and a reaper that deletes expired
// items, as AWS documents TTL (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html):
// - the TTL attribute holds a Number, epoch seconds; an item expires once that time has passed;
//   items whose attribute is missing, not a Number, or more than five years in the past are kept;
// - a deletion by TTL removes the item and its index entries (one LevelDB batch, under the item's
//   lock, after reading it again) and consumes no write units.
// AWS deletes expired items within a few days; this reaper looks every `ttlReaperMs` (a second by
// default: see the worker), so retention is visible locally. No logic may depend on either
// (DESIGN.md).
//
// The reaper does not scan tables: every write tells it the item's expiry (`noteWrite`, from the
// worker's write hooks), and it keeps them in a min-heap by due time, so a pass costs the items due,
// not the table's size. A table's items are scanned once when TTL is enabled on it, and once at
// start for tables that have it (`ready`, which the worker awaits before it serves a request).
// The setting is kept in the same LevelDB (key `dtc-ttl~<table>`) with the table's creation time, so
// a table deleted and created again starts with TTL disabled, as on AWS.
import { createRequire } from 'node:module';
import path from 'node:path';
import { batch, getItem, lockAll, writeOperations } from './dynamodb-transactions.mjs';

const require = createRequire(import.meta.url);
const db = require(path.join(path.dirname(require.resolve('dynalite')), 'db'));

export const TTL_PREFIX = 'dtc-ttl~';
export const DEFAULT_REAPER_INTERVAL_MS = 1000;
/** AWS keeps items whose TTL is more than five years in the past. */
const MAX_PAST_SECONDS = 5 * 365 * 24 * 60 * 60;
/** Deletions per pass: a bound on one pass's work; the next pass continues. */
const MAX_DELETES_PER_PASS = 1000;

const validationError = (message) => db.validationError(message);

/** The expiry (epoch seconds) of `item` under TTL attribute `attribute`, or undefined. */
function expiryOf(item, attribute) {
  const value = item?.[attribute]?.N;
  if (value === undefined) return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) ? seconds : undefined;
}

/** Is `item` expired at `nowMs` under TTL attribute `attribute`? */
export function isExpired(item, attribute, nowMs) {
  const seconds = expiryOf(item, attribute);
  if (seconds === undefined) return false;
  const nowSeconds = nowMs / 1000;
  return seconds <= nowSeconds && seconds >= nowSeconds - MAX_PAST_SECONDS;
}

/** A binary min-heap of { at, id, tableName, key } by `at`. */
class DueHeap {
  items = [];
  get size() {
    return this.items.length;
  }
  peek() {
    return this.items[0];
  }
  push(entry) {
    const a = this.items;
    a.push(entry);
    for (let i = a.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (a[parent].at <= a[i].at) break;
      [a[parent], a[i]] = [a[i], a[parent]];
      i = parent;
    }
  }
  pop() {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0) {
      a[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l].at < a[m].at) m = l;
        if (r < a.length && a[r].at < a[m].at) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i], a[m]];
        i = m;
      }
    }
    return top;
  }
}

const getTable = (store, name) => new Promise((resolve, reject) => store.getTable(name, false, (err, table) => (err ? reject(err) : resolve(table))));

/**
 * TTL for one dynalite store. `onDelete(table, item)` runs after each deletion by TTL.
 * `now()` is the clock (ms).
 */
export function createTimeToLive(store, { onDelete, now = Date.now } = {}) {
  /** Table name -> { AttributeName, Enabled, tableCreatedAt }, as kept in LevelDB. */
  const settings = new Map();
  const due = new DueHeap();
  /** "table\0key" -> the expiry of the item as last written: a heap entry with another is stale. */
  const latest = new Map();

  /** The table's setting, if it is for this incarnation of the table. */
  function current(table) {
    const s = settings.get(table.TableName);
    return s && s.tableCreatedAt === table.CreationDateTime ? s : undefined;
  }

  /**
   * Tell the reaper what a write left at `key` (dynalite's stored key; undefined: nothing stored):
   * `after` (null: deleted). Synchronous, for the write hooks.
   */
  function noteWrite(table, key, after) {
    const s = settings.get(table.TableName);
    if (!s?.Enabled || key === undefined) return;
    const id = `${table.TableName}\u0000${key}`;
    const at = expiryOf(after, s.AttributeName);
    if (at === undefined) {
      latest.delete(id);
      return;
    }
    if (latest.get(id) === at) return;
    latest.set(id, at);
    due.push({ at, id, tableName: table.TableName, key });
  }

  async function scanTable(table) {
    const prefix = `item-${table.TableName}~`;
    for await (const item of store.db.values({ gte: prefix, lt: `${prefix}\xff` })) noteWrite(table, db.createKey(item, table), item);
  }

  /** Settings from LevelDB and the expiries of the items of every table with TTL on. */
  const ready = (async () => {
    for await (const [key, value] of store.db.iterator({ gte: TTL_PREFIX, lt: `${TTL_PREFIX}\xff` })) settings.set(key.slice(TTL_PREFIX.length), value);
    for (const [tableName, s] of settings) {
      if (!s.Enabled) continue;
      const table = await getTable(store, tableName).catch(() => undefined);
      if (table && current(table)) await scanTable(table);
      else settings.delete(tableName); // the table is gone, or was created again since
    }
  })();

  async function describeTimeToLive(request) {
    const table = await getTable(store, request.TableName);
    const s = current(table);
    return { TimeToLiveDescription: s?.Enabled ? { TimeToLiveStatus: 'ENABLED', AttributeName: s.AttributeName } : { TimeToLiveStatus: 'DISABLED' } };
  }

  async function updateTimeToLive(request) {
    const spec = request.TimeToLiveSpecification;
    if (!spec || typeof spec !== 'object') throw validationError('The parameter \'TimeToLiveSpecification\' is required but was not present in the request');
    if (typeof spec.Enabled !== 'boolean') throw validationError('The parameter \'Enabled\' is required but was not present in the request');
    const name = spec.AttributeName;
    if (typeof name !== 'string' || name.length < 1 || name.length > 255) {
      throw validationError(`1 validation error detected: Value '${name}' at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: Member must have length between 1 and 255`);
    }
    const table = await getTable(store, request.TableName);
    const s = current(table);
    if (spec.Enabled && s?.Enabled) {
      if (s.AttributeName !== name) throw validationError(`TimeToLive is active on a different AttributeName: current AttributeName is ${s.AttributeName}`);
      throw validationError('TimeToLive is already enabled');
    }
    if (!spec.Enabled && !s?.Enabled) throw validationError('TimeToLive is already disabled');
    if (!spec.Enabled && s.AttributeName !== name) throw validationError(`TimeToLive is active on a different AttributeName: current AttributeName is ${s.AttributeName}`);
    const setting = { AttributeName: name, Enabled: spec.Enabled, tableCreatedAt: table.CreationDateTime };
    await new Promise((resolve, reject) => store.db.put(TTL_PREFIX + table.TableName, setting, (err) => (err ? reject(err) : resolve())));
    // Set before the scan: a write during it is noted by its hook, the rest by the scan.
    settings.set(table.TableName, setting);
    if (spec.Enabled) await scanTable(table);
    return { TimeToLiveSpecification: { AttributeName: name, Enabled: spec.Enabled } };
  }

  /** One pass: delete the items that are due (at most MAX_DELETES_PER_PASS). Returns how many. */
  async function reap() {
    await ready;
    let deleted = 0;
    const nowSeconds = now() / 1000;
    while (due.size > 0 && due.peek().at <= nowSeconds && deleted < MAX_DELETES_PER_PASS) {
      const entry = due.pop();
      if (latest.get(entry.id) !== entry.at) continue; // rewritten since, with another expiry
      latest.delete(entry.id);
      if (await deleteIfExpired(entry)) deleted++;
    }
    return deleted;
  }

  async function deleteIfExpired({ tableName, key }) {
    const table = await getTable(store, tableName).catch(() => undefined);
    const s = table && current(table);
    if (!s?.Enabled) return false;
    const release = await lockAll(store, [{ tableName, key }]);
    try {
      // Read again under the lock: the entry may be older than the item's last write.
      const item = await getItem(store, tableName, key);
      if (!isExpired(item, s.AttributeName, now())) return false;
      await batch(store, writeOperations(table, key, item, null));
      onDelete?.(table, item);
      return true;
    } finally {
      release();
    }
  }

  return { ready, noteWrite, describeTimeToLive, updateTimeToLive, reap };
}
