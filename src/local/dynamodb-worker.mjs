// dynalite on a worker thread of its own (see worker.ts): LevelDB, JSON and HTTP parsing on the
// second core instead of the thread that runs the Lambdas, Step Functions and the demo shop.
// Plain JavaScript, so it loads the same under `node --import tsx` and vitest.
//
// What the worker adds to dynalite:
// - TransactWriteItems and TransactGetItems (dynamodb-transactions.mjs), UpdateTimeToLive and
//   DescribeTimeToLive with a reaper that deletes expired items every `ttlReaperMs`
//   (dynamodb-ttl.mjs), ReturnValuesOnConditionCheckFailure on single writes;
// - crash-atomic single writes: an item and its index entries in one LevelDB batch
//   (atomicSingleWrites in dynamodb-transactions.mjs).
//
// Metering (workerData.meter): besides a `count` per request, the worker charges every request in
// request units as AWS bills them (dynamodb-billing.mjs), from inside dynalite's own db layer,
// where each write sees the item before and after it under the item's lock:
// - db.updateIndexes(store, table, before, after) runs for every PutItem, UpdateItem, DeleteItem and
//   BatchWriteItem entry that passed its condition: the base table and each index it touches;
// - db.checkConditional(data, existing) failing: the failed write's base-table units;
// - db.addConsumedCapacity(data, isRead, item): GetItem (and each BatchGetItem key);
// - db.queryTable(...): Query and Scan, by the summed size of the items read before any filter, as
//   dynalite sums them for ReturnConsumedCapacity (its sizes follow AWS's rules for ASCII text);
// - transactions, through their hooks: twice the base-table units of each item written or checked,
//   index writes as usual; twice the consistent read units of each item TransactGetItems reads; a
//   canceled transaction as one failed conditional write per action. Deletions by TTL are free.
// Charges go to the parent as `{ kind: 'charges', charges: [[table, index, key, wru, rru], ...] }`.
//
// Watches: after `{ kind: 'watch', id, table, attribute, values }`, a write that sets `attribute` of
// an item of `table` to one of `values` (a change) posts `{ kind: 'change', watch: id, item }` with
// the item's top-level scalars: an observer learns of it without a request of its own.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import {
  conditionCheckCharges,
  failedWriteCharges,
  itemSize,
  partitionKeyValue,
  plainItem,
  readUnits,
  sameValue,
  secondaryIndexes,
  transactionalReadUnits,
  writeCharges,
} from './dynamodb-billing.mjs';
import { atomicSingleWrites, createTransactions } from './dynamodb-transactions.mjs';
import { DEFAULT_REAPER_INTERVAL_MS, createTimeToLive } from './dynamodb-ttl.mjs';

const require = createRequire(import.meta.url);
const dynalite = require('dynalite');
// The same module instance dynalite's actions call through (`db.updateIndexes(...)`), so replacing
// its exports before the first request puts the hooks in their path.
const db = require(path.join(path.dirname(require.resolve('dynalite')), 'db'));

const { path: dataPath, port, meter, ttlReaperMs = DEFAULT_REAPER_INTERVAL_MS } = workerData;

/** Table name -> its description, as dynalite last read it (key schema and indexes); kept when metering. */
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

// Every charge is computed only when metering: without a meter no request pays for billing.
function charge(table, index, key, writeUnits, readUnits) {
  post({ kind: 'charge', charge: [table, index ?? '', key ?? '', writeUnits, readUnits] });
}

/** Charge the write charges of dynamodb-billing.mjs ([{ index, key, writeUnits }]) to `table`. */
function chargeWrites(table, charges) {
  for (const c of charges) charge(table.TableName, c.index, c.key, c.writeUnits, 0);
}

function notifyWatchers(table, before, after) {
  for (const w of watches.get(table.TableName) ?? []) {
    const value = after?.[w.attribute];
    const text = value?.S ?? value?.N;
    if (text === undefined || !w.values.has(text) || sameValue(before?.[w.attribute], value)) continue;
    post({ kind: 'change', watch: w.id, item: plainItem(after) });
  }
}

/**
 * After every write that passed its condition (single or in a transaction): bill it, tell watchers
 * and the TTL reaper. `storedKey`: the item's key as dynalite stores it, undefined when nothing is.
 */
function written(table, before, after, options, storedKey) {
  if (meter) chargeWrites(table, writeCharges(table, before, after, options));
  if (watches.size) notifyWatchers(table, before, after);
  timeToLive.noteWrite(table, storedKey, after);
}

/** The store's transactions, TTL and atomic single writes (dynalite creates one store per server). */
let transactions;
let timeToLive;
let singleWrites;

const create = db.create;
db.create = function (options) {
  const store = create.call(this, options);
  singleWrites = atomicSingleWrites(store);
  transactions = createTransactions(store, {
    committed: written,
    ...(meter && {
      conditionChecked: (table, existing, key) => chargeWrites(table, conditionCheckCharges(table, existing, key)),
      canceledAction: (table, existing, attempted, key) => chargeWrites(table, failedWriteCharges(table, existing, attempted, key)),
      read: (table, item, { transactional, key }) =>
        charge(table.TableName, '', partitionKeyValue(item ?? key, table.KeySchema), 0, transactional ? transactionalReadUnits(item) : readUnits(itemSize(item), true)),
    }),
  });
  timeToLive = createTimeToLive(store);
  if (!meter) return store;
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

// Replaced, not wrapped: the index operations are written with the item, in one batch
// (atomicSingleWrites). A transaction's staged actions (store.staging) write nothing here.
db.updateIndexes = function (store, table, before, after, cb) {
  if (store.staging) return cb();
  const key = writeKey;
  writeKey = undefined;
  // The key as dynalite stores the item (db.createKey hashes): once per write, for the TTL reaper and
  // the atomic batch. A delete of a missing item has none: it stores nothing.
  const storedKey = before || after ? db.createKey(after ?? before, table) : undefined;
  written(table, before, after, { key }, storedKey);
  singleWrites.noteIndexes(table, storedKey, before, after);
  return cb();
};

const checkConditional = db.checkConditional;
db.checkConditional = function (data, existing) {
  const invalid = checkConditional.call(this, data, existing);
  // A transaction's actions are charged by its hooks.
  if (data._staged) return invalid;
  if (invalid && data.ReturnValuesOnConditionCheckFailure === 'ALL_OLD' && existing) invalid.body.Item = existing;
  writeKey = invalid ? undefined : (data.Key ?? data.Item);
  const table = meter && invalid && tables.get(data.TableName);
  if (table && /ConditionalCheckFailed/.test(invalid.body?.__type ?? '')) chargeWrites(table, failedWriteCharges(table, existing, data.Item, data.Key));
  return invalid;
};

const addConsumedCapacity = db.addConsumedCapacity;
db.addConsumedCapacity = function (data, isRead, item, other) {
  const table = meter && isRead && tables.get(data.TableName);
  if (table) charge(data.TableName, '', partitionKeyValue(data.Key, table.KeySchema), 0, readUnits(itemSize(item), data.ConsistentRead));
  return addConsumedCapacity.call(this, data, isRead, item, other);
};

const queryTable = db.queryTable;
db.queryTable = function (store, table, data, opts, isLocal, fetchFromItemDb, startKeyNames, cb) {
  if (!meter) return queryTable.call(this, store, table, data, opts, isLocal, fetchFromItemDb, startKeyNames, cb);
  // Ask dynalite for its per-table and per-index figures, then hand the caller what it asked for.
  const asked = data.ReturnConsumedCapacity;
  data.ReturnConsumedCapacity = 'INDEXES';
  return queryTable.call(this, store, table, data, opts, isLocal, fetchFromItemDb, startKeyNames, (err, result) => {
    data.ReturnConsumedCapacity = asked;
    const consumed = result?.ConsumedCapacity;
    if (!err && consumed) {
      const index = data.IndexName ?? '';
      const indexes = consumed.GlobalSecondaryIndexes ?? consumed.LocalSecondaryIndexes ?? {};
      const keySchema = data.IndexName ? secondaryIndexes(table).find((i) => i.IndexName === data.IndexName)?.KeySchema : table.KeySchema;
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

// The operations served here rather than by dynalite (which answers UnknownOperationException to
// all but DescribeTimeToLive, and to that always DISABLED).
const served = {
  TransactWriteItems: (request) => transactions.transactWriteItems(request),
  TransactGetItems: (request) => transactions.transactGetItems(request),
  UpdateTimeToLive: (request) => timeToLive.updateTimeToLive(request),
  DescribeTimeToLive: (request) => timeToLive.describeTimeToLive(request),
};

function send(req, res, status, body) {
  const text = JSON.stringify(body);
  const contentType = String(req.headers['content-type'] ?? '').split(';')[0].trim();
  res.statusCode = status;
  res.setHeader('x-amzn-RequestId', randomBytes(26).toString('hex').toUpperCase());
  res.setHeader('Content-Type', contentType === 'application/x-amz-json-1.0' ? contentType : 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(text, 'utf8'));
  res.end(text);
}

async function serve(operation, req, res, body) {
  if (!String(req.headers.authorization ?? '').startsWith('AWS4-')) {
    return send(req, res, 400, { __type: 'com.amazon.coral.service#MissingAuthenticationTokenException', message: 'Request is missing Authentication Token' });
  }
  let request;
  try {
    request = JSON.parse(body);
  } catch {
    return send(req, res, 400, { __type: 'com.amazon.coral.service#SerializationException' });
  }
  try {
    send(req, res, 200, await served[operation](request ?? {}));
  } catch (err) {
    if (err?.statusCode && err.body) return send(req, res, err.statusCode, err.body);
    console.error(`[dynamodb] ${operation} failed:`, err);
    send(req, res, 500, { __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: String(err?.message ?? err) });
  }
}

const [dynaliteHandler] = server.listeners('request');
server.removeAllListeners('request');
server.on('request', (req, res) => {
  const operation = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? '';
  if (req.method !== 'POST' || !Object.hasOwn(served, operation)) return dynaliteHandler(req, res);
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => void serve(operation, req, res, Buffer.concat(chunks).toString('utf8')));
});

// Expired items go in a periodic pass (never two at once); client request tokens past their
// window (which a read already ignores) are forgotten once a minute, since that scans them all.
const TOKEN_PURGE_MS = 60_000;
let passing = false;
let tokensPurgedAtMs = Date.now();
const reaper = setInterval(() => {
  if (passing) return;
  passing = true;
  const purge = Date.now() - tokensPurgedAtMs >= TOKEN_PURGE_MS;
  if (purge) tokensPurgedAtMs = Date.now();
  Promise.all([timeToLive.reap(), purge ? transactions.purgeTokens() : 0])
    .catch((err) => console.error('[dynamodb] TTL pass failed:', err))
    .finally(() => (passing = false));
}, ttlReaperMs);
reaper.unref();

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
  clearInterval(reaper);
  server.closeAllConnections?.();
  server.close(() => parentPort.postMessage({ kind: 'stopped' }));
});

server.once('error', (err) => parentPort.postMessage({ kind: 'error', message: err.message }));
// Serve once the TTL reaper knows the expiries of the items already stored (see dynamodb-ttl.mjs).
timeToLive.ready.then(
  () => server.listen(port ?? 0, '127.0.0.1', () => parentPort.postMessage({ kind: 'listening', port: server.address().port })),
  (err) => parentPort.postMessage({ kind: 'error', message: `TTL settings could not be read: ${err.message}` }),
);
