// dynalite on a worker thread of its own (see worker.ts): LevelDB, JSON and HTTP parsing on the
// second core instead of the thread that runs the Lambdas, Step Functions and the demo shop.
// Plain JavaScript, so it loads the same under `node --import tsx` and vitest.
//
// Metering (workerData.meter): besides a `count` per request, the worker charges every request in
// request units as AWS bills them (dynamodb-billing.mjs), from inside dynalite's own db layer,
// where each write sees the item before and after it under the item's lock:
// - db.updateIndexes(store, table, before, after) runs for every PutItem, UpdateItem, DeleteItem and
//   BatchWriteItem entry that passed its condition: the base table and each index it touches;
// - db.checkConditional(data, existing) failing: the failed write's base-table units;
// - db.addConsumedCapacity(data, isRead, item): GetItem (and each BatchGetItem key);
// - db.queryTable(...): Query and Scan, by the summed size of the items read before any filter, as
//   dynalite sums them for ReturnConsumedCapacity (its sizes follow AWS's rules for ASCII text).
// TransactWriteItems would bill twice the base-table units (writeCharges' `transactional`); dynalite
// does not serve it, so nothing here calls it yet.
// Charges go to the parent as `{ kind: 'charges', charges: [[table, index, key, wru, rru], ...] }`.
//
// Watches: after `{ kind: 'watch', id, table, attribute, values }`, a write that sets `attribute` of
// an item of `table` to one of `values` (a change) posts `{ kind: 'change', watch: id, item }` with
// the item's top-level scalars: an observer learns of it without a request of its own.
import { createRequire } from 'node:module';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { failedWriteCharges, itemSize, partitionKeyValue, plainItem, readUnits, sameValue, writeCharges } from './dynamodb-billing.mjs';

const require = createRequire(import.meta.url);
const dynalite = require('dynalite');
// The same module instance dynalite's actions call through (`db.updateIndexes(...)`), so replacing
// its exports before the first request puts the hooks in their path.
const db = require(path.join(path.dirname(require.resolve('dynalite')), 'db'));

const { path: dataPath, port, meter } = workerData;

/** Table name -> its description, as dynalite last read it (key schema and indexes). */
const tables = new Map();
/** Table name -> [{ id, attribute, values: Set }]. */
const watches = new Map();

let pending = [];
let flushScheduled = false;
function post(message) {
  pending.push(message);
  if (flushScheduled) return;
  flushScheduled = true;
  // One message per turn of the event loop, not per write: charges of a burst travel together.
  setImmediate(() => {
    flushScheduled = false;
    const charges = [];
    for (const m of pending) {
      if (m.kind === 'charge') charges.push(m.charge);
      else {
        if (charges.length) parentPort.postMessage({ kind: 'charges', charges: charges.splice(0) });
        parentPort.postMessage(m);
      }
    }
    if (charges.length) parentPort.postMessage({ kind: 'charges', charges });
    pending = [];
  });
}

function charge(table, index, key, writeUnits, readUnits) {
  if (meter) post({ kind: 'charge', charge: [table, index ?? '', key ?? '', writeUnits, readUnits] });
}

function notifyWatchers(table, before, after) {
  for (const w of watches.get(table.TableName) ?? []) {
    const value = after?.[w.attribute];
    const text = value?.S ?? value?.N;
    if (text === undefined || !w.values.has(text) || sameValue(before?.[w.attribute], value)) continue;
    post({ kind: 'change', watch: w.id, item: plainItem(after) });
  }
}

const create = db.create;
db.create = function (options) {
  const store = create.call(this, options);
  const getTable = store.getTable;
  store.getTable = function (name, checkStatus, cb) {
    const done = typeof checkStatus === 'function' ? checkStatus : cb;
    const remember = (err, table) => {
      if (!err && table) tables.set(name, table);
      done(err, table);
    };
    return typeof checkStatus === 'function' ? getTable.call(this, name, remember) : getTable.call(this, name, checkStatus, remember);
  };
  return store;
};

// The key of the write in progress: put, update and delete check their condition (if any) and then,
// in the same synchronous callback, update the indexes; a delete of a missing item has no other key.
let writeKey;

const updateIndexes = db.updateIndexes;
db.updateIndexes = function (store, table, before, after, cb) {
  const key = writeKey;
  writeKey = undefined;
  for (const c of writeCharges(table, before, after, { key })) charge(table.TableName, c.index, c.key, c.writeUnits, 0);
  if (watches.size) notifyWatchers(table, before, after);
  return updateIndexes.call(this, store, table, before, after, cb);
};

const checkConditional = db.checkConditional;
db.checkConditional = function (data, existing) {
  const invalid = checkConditional.call(this, data, existing);
  writeKey = invalid ? undefined : (data.Key ?? data.Item);
  const table = tables.get(data.TableName);
  if (invalid && table && /ConditionalCheckFailed/.test(invalid.body?.__type ?? '')) {
    for (const c of failedWriteCharges(table, existing, data.Item, data.Key)) charge(table.TableName, c.index, c.key, c.writeUnits, 0);
  }
  return invalid;
};

const addConsumedCapacity = db.addConsumedCapacity;
db.addConsumedCapacity = function (data, isRead, item, other) {
  const table = tables.get(data.TableName);
  if (isRead && table) charge(data.TableName, '', partitionKeyValue(data.Key, table.KeySchema), 0, readUnits(itemSize(item), data.ConsistentRead));
  return addConsumedCapacity.call(this, data, isRead, item, other);
};

const queryTable = db.queryTable;
db.queryTable = function (store, table, data, opts, isLocal, fetchFromItemDb, startKeyNames, cb) {
  // Ask dynalite for its per-table and per-index figures, then hand the caller what it asked for.
  const asked = data.ReturnConsumedCapacity;
  data.ReturnConsumedCapacity = 'INDEXES';
  return queryTable.call(this, store, table, data, opts, isLocal, fetchFromItemDb, startKeyNames, (err, result) => {
    data.ReturnConsumedCapacity = asked;
    const consumed = result?.ConsumedCapacity;
    if (!err && consumed) {
      const index = data.IndexName ?? '';
      const indexes = consumed.GlobalSecondaryIndexes ?? consumed.LocalSecondaryIndexes ?? {};
      const keySchema = data.IndexName
        ? [...(table.GlobalSecondaryIndexes ?? []), ...(table.LocalSecondaryIndexes ?? [])].find((i) => i.IndexName === data.IndexName)?.KeySchema
        : table.KeySchema;
      const hashName = keySchema?.find((k) => k.KeyType === 'HASH')?.AttributeName;
      const hashValue = data.KeyConditions?.[hashName]?.AttributeValueList?.[0];
      const key = hashValue ? String(hashValue.S ?? hashValue.N ?? hashValue.B) : '';
      const units = (data.IndexName ? indexes[data.IndexName]?.CapacityUnits : consumed.Table?.CapacityUnits) ?? 0;
      // A read of nothing still costs one 4 KB step.
      charge(table.TableName, index, key, 0, units > 0 ? units : readUnits(0, data.ConsistentRead));
      if (asked !== 'INDEXES' && asked !== 'TOTAL') delete result.ConsumedCapacity;
      else if (asked === 'TOTAL') {
        delete consumed.Table;
        delete consumed.GlobalSecondaryIndexes;
        delete consumed.LocalSecondaryIndexes;
      }
    }
    cb(err, result);
  });
};

// Tables become ACTIVE at once: the provisioner waits for nothing.
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(dataPath ? { path: dataPath } : {}) });

if (meter) {
  // dynalite reads bodies with 'data' listeners too, so a second listener sees every chunk.
  server.on('request', (req) => {
    const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? 'unknown';
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let table;
      try {
        table = JSON.parse(Buffer.concat(chunks).toString('utf8')).TableName;
      } catch {
        table = undefined;
      }
      parentPort.postMessage({ kind: 'count', operation, resource: table });
    });
  });
}

parentPort.on('message', (message) => {
  if (message?.kind === 'watch') {
    const list = watches.get(message.table) ?? [];
    list.push({ id: message.id, attribute: message.attribute, values: new Set(message.values) });
    watches.set(message.table, list);
    return;
  }
  if (message?.kind !== 'stop') return;
  server.closeAllConnections?.();
  server.close(() => parentPort.postMessage({ kind: 'stopped' }));
});

server.once('error', (err) => parentPort.postMessage({ kind: 'error', message: err.message }));
server.listen(port ?? 0, '127.0.0.1', () => parentPort.postMessage({ kind: 'listening', port: server.address().port }));
