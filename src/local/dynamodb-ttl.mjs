// Time to live on dynalite: UpdateTimeToLive, DescribeTimeToLive and a reaper that deletes expired
// items, as AWS documents TTL (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/TTL.html):
// - the TTL attribute holds a Number, epoch seconds; an item expires once that time has passed;
//   items whose attribute is missing, not a Number, or more than five years in the past are kept;
// - a deletion by TTL removes the item and its index entries (one LevelDB batch, under the item's
//   lock, after reading it again) and consumes no write units.
// AWS deletes expired items within a few days; this reaper looks every `intervalMs` (a second by
// default), so retention is visible locally. No logic may depend on either (DESIGN.md).
// The setting is kept in the same LevelDB (key `dtc-ttl~<table>`) with the table's creation time, so
// a table deleted and created again starts with TTL disabled, as on AWS.
import { createRequire } from 'node:module';
import path from 'node:path';
import { lockAll, writeOperations } from './dynamodb-transactions.mjs';

const require = createRequire(import.meta.url);
const db = require(path.join(path.dirname(require.resolve('dynalite')), 'db'));

export const TTL_PREFIX = 'dtc-ttl~';
export const DEFAULT_REAPER_INTERVAL_MS = 1000;
/** AWS keeps items whose TTL is more than five years in the past. */
const MAX_PAST_SECONDS = 5 * 365 * 24 * 60 * 60;
/** Deletions per table per pass: a bound on one pass's work; the next pass continues. */
const MAX_DELETES_PER_PASS = 1000;

const validationError = (message) => db.validationError(message);

/** Is `item` expired at `nowMs` under TTL attribute `attribute`? */
export function isExpired(item, attribute, nowMs) {
  const value = item?.[attribute]?.N;
  if (value === undefined) return false;
  const seconds = Number(value);
  if (!Number.isFinite(seconds)) return false;
  const nowSeconds = nowMs / 1000;
  return seconds <= nowSeconds && seconds >= nowSeconds - MAX_PAST_SECONDS;
}

const getTable = (store, name) => new Promise((resolve, reject) => store.getTable(name, false, (err, table) => (err ? reject(err) : resolve(table))));

/**
 * TTL for one dynalite store. `onDelete(table, item)` runs after each deletion by TTL.
 * `now()` is the clock (ms).
 */
export function createTimeToLive(store, { onDelete, now = Date.now } = {}) {
  /** Table name -> { AttributeName, Enabled, tableCreatedAt }; loaded from LevelDB on first use. */
  let settings;

  async function load() {
    if (settings) return settings;
    const loaded = new Map();
    for await (const [key, value] of store.db.iterator({ gte: TTL_PREFIX, lt: `${TTL_PREFIX}\xff` })) loaded.set(key.slice(TTL_PREFIX.length), value);
    settings ??= loaded;
    return settings;
  }

  /** The table's setting, if it is for this incarnation of the table. */
  async function current(table) {
    const s = (await load()).get(table.TableName);
    return s && s.tableCreatedAt === table.CreationDateTime ? s : undefined;
  }

  async function describeTimeToLive(request) {
    const table = await getTable(store, request.TableName);
    const s = await current(table);
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
    const s = await current(table);
    if (spec.Enabled && s?.Enabled) {
      if (s.AttributeName !== name) throw validationError(`TimeToLive is active on a different AttributeName: current AttributeName is ${s.AttributeName}`);
      throw validationError('TimeToLive is already enabled');
    }
    if (!spec.Enabled && !s?.Enabled) throw validationError('TimeToLive is already disabled');
    if (!spec.Enabled && s.AttributeName !== name) throw validationError(`TimeToLive is active on a different AttributeName: current AttributeName is ${s.AttributeName}`);
    const setting = { AttributeName: name, Enabled: spec.Enabled, tableCreatedAt: table.CreationDateTime };
    await new Promise((resolve, reject) => store.db.put(TTL_PREFIX + table.TableName, setting, (err) => (err ? reject(err) : resolve())));
    (await load()).set(table.TableName, setting);
    return { TimeToLiveSpecification: { AttributeName: name, Enabled: spec.Enabled } };
  }

  /** One pass: delete what has expired in every table with TTL enabled. Returns the number deleted. */
  async function reap() {
    let deleted = 0;
    for (const [tableName, s] of await load()) {
      if (!s.Enabled) continue;
      let table;
      try {
        table = await getTable(store, tableName);
      } catch {
        continue; // the table is gone
      }
      if (table.CreationDateTime !== s.tableCreatedAt) continue;
      deleted += await reapTable(table, s.AttributeName);
    }
    return deleted;
  }

  async function reapTable(table, attribute) {
    const prefix = `item-${table.TableName}~`;
    const expired = [];
    const nowMs = now();
    for await (const item of store.db.values({ gte: prefix, lt: `${prefix}\xff` })) {
      if (isExpired(item, attribute, nowMs)) expired.push(db.createKey(item, table));
      if (expired.length >= MAX_DELETES_PER_PASS) break;
    }
    let deleted = 0;
    for (const key of expired) {
      const release = await lockAll(store, [{ tableName: table.TableName, key }]);
      try {
        // Read again under the lock: a write since the scan may have moved its expiry.
        const item = await new Promise((resolve, reject) => store.getItemDb(table.TableName).get(key, (err, v) => (err && err.name !== 'NotFoundError' ? reject(err) : resolve(v))));
        if (!isExpired(item, attribute, now())) continue;
        await new Promise((resolve, reject) => store.db.batch(writeOperations(table, key, item, null), (err) => (err ? reject(err) : resolve())));
        deleted++;
        onDelete?.(table, item);
      } finally {
        release();
      }
    }
    return deleted;
  }

  return { describeTimeToLive, updateTimeToLive, reap };
}
