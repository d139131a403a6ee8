// DynamoDB transactions on dynalite: TransactWriteItems and TransactGetItems with AWS's documented
// semantics (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html
// and the API reference of both operations), built on dynalite's own pieces:
// - every action is checked and applied by dynalite's own PutItem/UpdateItem/DeleteItem code, run
//   against a "staging" store that hands it the item read under the transaction's locks and
//   captures what it would write, so conditions, update expressions and item limits behave exactly
//   as in single writes;
// - isolation: the transaction takes dynalite's per-item locks (`itemDb.lock`, the ones single
//   writes take) for all its keys in one synchronous pass, so locks queue in one global order and
//   never deadlock; a single write to one of its items waits until it is done;
// - crash atomicity: every item, every index entry and the client request token go to LevelDB in
//   ONE batch, so a kill -9 leaves all of it or none of it (single writes go through one batch too:
//   see `atomicSingleWrites`);
// - TransactionConflict: a transaction (write or get) that meets an item held by another in-flight
//   write transaction is canceled, with `TransactionConflict` as that action's reason;
// - ClientRequestToken: kept durably (in the same batch as the effect) for 10 minutes after the
//   transaction succeeded; the same request again succeeds without applying anything, another request
//   under the same token gets IdempotentParameterMismatchException, and one still in flight
//   TransactionInProgressException (which the SDK retries).
// Differences from AWS, on purpose: a PutItem/UpdateItem/DeleteItem that meets an item an in-flight
// transaction holds waits for it (a few milliseconds) instead of failing with
// TransactionConflictException, and so does a transaction that meets a single write in progress.
// Plain JavaScript: loaded by the DynamoDB worker (dynamodb-worker.mjs) under tsx and vitest alike.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const dynaliteDir = path.dirname(require.resolve('dynalite'));
const db = require(path.join(dynaliteDir, 'db'));
const validations = require(path.join(dynaliteDir, 'validations'));
const actions = {
  Put: require(path.join(dynaliteDir, 'actions', 'putItem')),
  Update: require(path.join(dynaliteDir, 'actions', 'updateItem')),
  Delete: require(path.join(dynaliteDir, 'actions', 'deleteItem')),
};
const actionValidations = {
  Put: require(path.join(dynaliteDir, 'validations', 'putItem')),
  Update: require(path.join(dynaliteDir, 'validations', 'updateItem')),
  Delete: require(path.join(dynaliteDir, 'validations', 'deleteItem')),
  // A ConditionCheck names a key and a condition, as a DeleteItem does.
  ConditionCheck: require(path.join(dynaliteDir, 'validations', 'deleteItem')),
  Get: require(path.join(dynaliteDir, 'validations', 'getItem')),
};

/** AWS's limits (API reference: TransactWriteItems, TransactGetItems). */
export const MAX_TRANSACT_ITEMS = 100;
export const MAX_TRANSACTION_BYTES = 4 * 1024 * 1024;
export const CLIENT_TOKEN_MAX_LENGTH = 36;
export const CLIENT_TOKEN_WINDOW_MS = 10 * 60 * 1000;

/** LevelDB key prefix of the kept client request tokens (no dynalite prefix starts so). */
export const TOKEN_PREFIX = 'dtc-token~';

const WRITE_KINDS = ['ConditionCheck', 'Put', 'Delete', 'Update'];

// ReturnValuesOnConditionCheckFailure on single writes: dynalite drops parameters it does not
// know, so teach its validations this one; the worker attaches the item to the failure.
for (const kind of ['Put', 'Update', 'Delete']) {
  actionValidations[kind].types.ReturnValuesOnConditionCheckFailure = { type: 'String', enum: ['ALL_OLD', 'NONE'] };
}

export function awsError(type, message, extra = {}) {
  const err = new Error(message);
  err.statusCode = 400;
  err.body = { __type: `com.amazonaws.dynamodb.v20120810#${type}`, message, ...extra };
  return err;
}

const validationError = (message) => db.validationError(message);

/** The LevelDB key of an item and of an index entry, as dynalite's prefixed sub-databases spell them. */
export const itemKey = (tableName, key) => `item-${tableName}~${key}`;
const indexKey = (indexType, tableName, indexName, key) => `index-${indexType.toLowerCase()}~${tableName}~${indexName}~${key}`;

/** The index deletes and puts that replace `before` by `after` (dynalite's own rules), as batch operations. */
export function indexOperations(table, before, after) {
  const ops = [];
  for (const indexType of ['Local', 'Global']) {
    const found = db.getIndexActions(table[`${indexType}SecondaryIndexes`] ?? [], before, after, table);
    for (const d of found.deletes) ops.push({ type: 'del', key: indexKey(indexType, table.TableName, d.index, d.key) });
    for (const p of found.puts) ops.push({ type: 'put', key: indexKey(indexType, table.TableName, p.index, p.key), value: p.item });
  }
  return ops;
}

/** The batch that replaces `before` by `after` (null: deleted): index entries first, then the item. */
export function writeOperations(table, key, before, after) {
  const ops = indexOperations(table, before, after);
  ops.push(after ? { type: 'put', key: itemKey(table.TableName, key), value: after } : { type: 'del', key: itemKey(table.TableName, key) });
  return ops;
}

const getTable = (store, name) =>
  new Promise((resolve, reject) => store.getTable(name, (err, table) => (err ? reject(err) : resolve(table))));
/** The item stored under dynalite's `key` in `tableName`, undefined when there is none. */
export const getItem = (store, tableName, key) =>
  new Promise((resolve, reject) => store.getItemDb(tableName).get(key, (err, item) => (err && err.name !== 'NotFoundError' ? reject(err) : resolve(item ?? undefined))));
/** One LevelDB batch of `ops` (writeOperations' and indexOperations' shape), atomically. */
export const batch = (store, ops) => new Promise((resolve, reject) => store.db.batch(ops, (err) => (err ? reject(err) : resolve())));

/**
 * Take dynalite's item locks for every (table, key) at once. All registrations happen in this one
 * synchronous pass, so any two lockers queue in the same order on every key they share: no deadlock.
 * Resolves with a function that releases them all.
 */
export function lockAll(store, entries) {
  const byTable = new Map();
  for (const e of entries) {
    if (!byTable.has(e.tableName)) byTable.set(e.tableName, []);
    byTable.get(e.tableName).push(e.key);
  }
  return new Promise((resolve) => {
    const releases = [];
    let waiting = byTable.size;
    for (const [tableName, keys] of [...byTable].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      store.getItemDb(tableName).lock([...keys].sort(), (release) => {
        releases.push(release(() => {}));
        if (--waiting === 0) resolve(() => releases.forEach((r) => r()));
      });
    }
  });
}

/** A store that hands dynalite's write actions the item read under our locks and captures their write. */
function stagingStore(store, table, existing) {
  const staged = { after: undefined };
  const itemDb = {
    lock: (_key, exec) => exec((cb) => cb),
    get: (_key, cb) => cb(null, existing),
    put: (_key, item, cb) => {
      staged.after = item;
      cb(null);
    },
    del: (_key, cb) => {
      staged.after = null;
      cb(null);
    },
  };
  return {
    staging: true,
    staged,
    options: store.options,
    getTable: (_name, checkStatus, cb) => (typeof checkStatus === 'function' ? checkStatus : cb)(null, table),
    getItemDb: () => itemDb,
  };
}

/**
 * Run one write action with dynalite's own code, synchronously (the staging store answers at once).
 * Returns { after } (null: deleted) or { error }.
 */
function stage(kind, store, table, data, existing) {
  const staging = stagingStore(store, table, existing);
  let outcome;
  actions[kind](staging, data, (err) => {
    outcome = err ? { error: err } : { after: staging.staged.after };
  });
  if (!outcome) throw new Error(`dynalite's ${kind} did not finish synchronously on the staging store`);
  return outcome;
}

/** One action's request in dynalite's shape, validated (expressions parsed) as the single operation would be. */
function validateAction(store, kind, action) {
  const v = actionValidations[kind];
  const { ReturnValuesOnConditionCheckFailure: returnOnFailure, ...rest } = action;
  if (returnOnFailure !== undefined && returnOnFailure !== 'ALL_OLD' && returnOnFailure !== 'NONE') {
    throw validationError(
      `1 validation error detected: Value '${returnOnFailure}' at 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]`,
    );
  }
  if (kind === 'ConditionCheck' && !rest.ConditionExpression) {
    throw validationError('The parameter \'ConditionExpression\' is required but was not present in the request');
  }
  const data = validations.checkTypes(structuredClone(rest), v.types);
  validations.checkValidations(data, v.types, v.custom, store);
  data._staged = true;
  return { data, returnOnFailure };
}

function lengthError(field, value, constraint) {
  return validationError(`1 validation error detected: Value '${value}' at '${field}' failed to satisfy constraint: Member must have length ${constraint}`);
}

function checkItemCount(items) {
  if (!Array.isArray(items)) throw validationError('The parameter \'TransactItems\' is required but was not present in the request');
  if (items.length < 1) throw lengthError('transactItems', '[]', 'greater than or equal to 1');
  if (items.length > MAX_TRANSACT_ITEMS) throw lengthError('transactItems', `[${items.length} items]`, `less than or equal to ${MAX_TRANSACT_ITEMS}`);
}

/** Resolve tables, validate keys, and refuse two actions on one item. Returns [{ kind, data, table, key, id }]. */
async function resolveTargets(store, parsed) {
  const seen = new Set();
  const targets = [];
  // Each table the request names read once, however many of its actions name it.
  const tables = new Map();
  for (const p of parsed) {
    let table = tables.get(p.data.TableName);
    if (!table) tables.set(p.data.TableName, (table = await getTable(store, p.data.TableName)));
    const invalid = p.kind === 'Put' ? db.validateItem(p.data.Item, table) : db.validateKey(p.data.Key, table);
    if (invalid) throw invalid;
    const key = db.createKey(p.kind === 'Put' ? p.data.Item : p.data.Key, table);
    const id = `${table.TableName}\u0000${key}`;
    if (seen.has(id)) throw validationError('Transaction request cannot include multiple operations on one item');
    seen.add(id);
    targets.push({ ...p, table, tableName: table.TableName, key, id });
  }
  return targets;
}

function canceled(reasons) {
  const codes = reasons.map((r) => r.Code).join(', ');
  return awsError('TransactionCanceledException', `Transaction cancelled, please refer cancellation reasons for specific reasons [${codes}]`, {
    CancellationReasons: reasons,
  });
}

const tokenHash = (transactItems) => createHash('sha256').update(JSON.stringify(transactItems)).digest('hex');

/**
 * The transactions of one dynalite store. `hooks`:
 *   committed(table, before, after, { transactional, key }, storedKey): after each item of a committed
 *     transaction (billing, watchers and TTL; `storedKey` is the item's key as dynalite stores it);
 *   conditionChecked(table, item): a ConditionCheck of a committed transaction (billing);
 *   canceledAction(table, existing, attempted, key): each action of a canceled transaction (billing);
 *   read(table, item, { transactional }): each item a TransactGetItems read, and each item an
 *     idempotent replay re-reads (billing).
 * `now()` is the clock (ms) for client request tokens.
 */
export function createTransactions(store, hooks = {}, now = Date.now) {
  /** Items held by in-flight write transactions: "table\0key" -> the transaction's own object. */
  const held = new Map();
  /** Client request tokens in flight: token -> request hash. */
  const tokensInFlight = new Map();

  async function keptToken(token) {
    if (!token) return undefined;
    const kept = await new Promise((resolve, reject) => store.db.get(TOKEN_PREFIX + token, (err, v) => (err && err.name !== 'NotFoundError' ? reject(err) : resolve(v))));
    if (!kept || now() - kept.completedAtMs > CLIENT_TOKEN_WINDOW_MS) return undefined;
    return kept;
  }

  async function transactWriteItems(request) {
    checkItemCount(request.TransactItems);
    const token = request.ClientRequestToken;
    if (token !== undefined && (typeof token !== 'string' || token.length < 1 || token.length > CLIENT_TOKEN_MAX_LENGTH)) {
      throw lengthError('clientRequestToken', token, `less than or equal to ${CLIENT_TOKEN_MAX_LENGTH}`);
    }
    const hash = tokenHash(request.TransactItems);
    const parsed = request.TransactItems.map((entry) => {
      const kinds = WRITE_KINDS.filter((k) => entry?.[k] != null);
      if (kinds.length !== 1) throw validationError('TransactItems can only contain one of Check, Put, Update or Delete');
      const kind = kinds[0];
      return { kind, ...validateAction(store, kind, entry[kind]) };
    });
    const targets = await resolveTargets(store, parsed);
    const requestBytes = targets.reduce((sum, t) => sum + db.itemSize(t.data.Item ?? t.data.Key), 0);
    if (requestBytes > MAX_TRANSACTION_BYTES) throw validationError('Transaction request size exceeds the 4 MB limit');

    if (token) {
      const inFlight = tokensInFlight.get(token);
      if (inFlight !== undefined) {
        if (inFlight !== hash) throw awsError('IdempotentParameterMismatchException', 'The request uses the same client token as a previous, but non-identical request.');
        throw awsError('TransactionInProgressException', 'The transaction with the given request token is already in progress.');
      }
      // Claimed before the first await: two requests with one token never both pass.
      tokensInFlight.set(token, hash);
    }
    try {
      const kept = await keptToken(token);
      if (kept) {
        if (kept.hash !== hash) throw awsError('IdempotentParameterMismatchException', 'The request uses the same client token as a previous, but non-identical request.');
        // Already applied: succeed without applying it again (AWS bills this as reads of the items).
        for (const t of targets) hooks.read?.(t.table, await getItem(store, t.tableName, t.key), { transactional: false, key: t.data.Key ?? t.data.Item });
        return consumedCapacity(request, targets, false);
      }
      return await apply(request, targets, token, hash);
    } finally {
      if (token) tokensInFlight.delete(token);
    }
  }

  /** Conflict check, locks, conditions, and one batch. */
  async function apply(request, targets, token, hash) {
    // Conflict with another in-flight write transaction: canceled, nothing waits.
    if (targets.some((t) => held.has(t.id))) {
      throw canceled(targets.map((t) => (held.has(t.id) ? { Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' } : { Code: 'None' })));
    }
    const self = {};
    for (const t of targets) held.set(t.id, self);
    const release = await lockAll(store, targets);
    try {
      const reasons = [];
      const writes = [];
      const existingItems = await Promise.all(targets.map((t) => getItem(store, t.tableName, t.key)));
      for (const [i, t] of targets.entries()) {
        const existing = existingItems[i];
        t.existing = existing;
        if (t.kind === 'ConditionCheck') {
          const failed = db.checkConditional(t.data, existing);
          reasons.push(failed ? conditionFailure(t, existing) : { Code: 'None' });
          continue;
        }
        const outcome = stage(t.kind, store, t.table, t.data, existing);
        if (outcome.error) {
          const type = outcome.error.body?.__type ?? '';
          if (/ConditionalCheckFailed/.test(type)) reasons.push(conditionFailure(t, existing));
          else if (outcome.error.statusCode === 400) reasons.push({ Code: 'ValidationError', Message: outcome.error.body?.message ?? outcome.error.message });
          else throw outcome.error;
          continue;
        }
        reasons.push({ Code: 'None' });
        writes.push({ t, before: existing, after: outcome.after });
      }
      if (reasons.some((r) => r.Code !== 'None')) {
        for (const t of targets) hooks.canceledAction?.(t.table, t.existing, t.data.Item, t.data.Key);
        throw canceled(reasons);
      }
      const ops = writes.flatMap((w) => writeOperations(w.t.table, w.t.key, w.before, w.after));
      if (token) ops.push({ type: 'put', key: TOKEN_PREFIX + token, value: { hash, completedAtMs: now() } });
      await batch(store, ops);
      for (const t of targets) {
        if (t.kind === 'ConditionCheck') hooks.conditionChecked?.(t.table, t.existing, t.data.Key);
      }
      for (const w of writes) hooks.committed?.(w.t.table, w.before, w.after, { transactional: true, key: w.t.data.Key ?? w.t.data.Item }, w.t.key);
      return consumedCapacity(request, targets, true);
    } finally {
      release();
      for (const t of targets) if (held.get(t.id) === self) held.delete(t.id);
    }
  }

  function conditionFailure(target, existing) {
    const reason = { Code: 'ConditionalCheckFailed', Message: 'The conditional request failed' };
    if (target.returnOnFailure === 'ALL_OLD' && existing) reason.Item = existing;
    return reason;
  }

  async function transactGetItems(request) {
    checkItemCount(request.TransactItems);
    const parsed = request.TransactItems.map((entry) => {
      if (entry?.Get == null || Object.keys(entry).length !== 1) throw validationError('TransactItems can only contain Get');
      return { kind: 'Get', ...validateAction(store, 'Get', entry.Get) };
    });
    const targets = await resolveTargets(store, parsed);
    if (targets.some((t) => held.has(t.id))) {
      throw canceled(targets.map((t) => (held.has(t.id) ? { Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' } : { Code: 'None' })));
    }
    // Under the items' locks: no write (single or transaction) is half done on any of them.
    const release = await lockAll(store, targets);
    let items;
    try {
      items = await Promise.all(targets.map((t) => getItem(store, t.tableName, t.key)));
    } finally {
      release();
    }
    const responses = targets.map((t, i) => {
      const item = items[i];
      if (!item) return {};
      const paths = t.data._projection ? t.data._projection.paths : undefined;
      return { Item: paths ? db.mapPaths(paths, item) : item };
    });
    targets.forEach((t, i) => hooks.read?.(t.table, items[i], { transactional: true, key: t.data.Key }));
    return { Responses: responses, ...consumedCapacity(request, targets, false, items) };
  }

  /** Forget client request tokens past their window (called by the worker's periodic pass). */
  async function purgeTokens() {
    const expired = [];
    for await (const [key, value] of store.db.iterator({ gte: TOKEN_PREFIX, lt: `${TOKEN_PREFIX}\xff` })) {
      if (now() - value.completedAtMs > CLIENT_TOKEN_WINDOW_MS) expired.push({ type: 'del', key });
    }
    if (expired.length) await batch(store, expired);
    return expired.length;
  }

  return { transactWriteItems, transactGetItems, purgeTokens, held };
}

/** ConsumedCapacity per table when asked: 2 units per KB written (or 4 KB read) per item, as AWS bills transactions. */
function consumedCapacity(request, targets, wrote, readItems) {
  const mode = request.ReturnConsumedCapacity;
  if (mode !== 'TOTAL' && mode !== 'INDEXES') return {};
  const perTable = new Map();
  targets.forEach((t, i) => {
    const units = wrote
      ? 2 * Math.max(1, Math.ceil(Math.max(db.itemSize(t.existing ?? {}), db.itemSize(t.data.Item ?? {})) / 1024))
      : 2 * Math.max(1, Math.ceil(db.itemSize(readItems?.[i] ?? t.existing ?? {}) / 4096));
    perTable.set(t.tableName, (perTable.get(t.tableName) ?? 0) + units);
  });
  return {
    ConsumedCapacity: [...perTable].map(([TableName, CapacityUnits]) => ({
      TableName,
      CapacityUnits,
      ...(wrote ? { WriteCapacityUnits: CapacityUnits } : { ReadCapacityUnits: CapacityUnits }),
      ...(mode === 'INDEXES' ? { Table: { CapacityUnits } } : {}),
    })),
  };
}

/**
 * Make dynalite's single writes crash-atomic: it writes an item's index entries (deletes, then
 * puts) and then the item as separate LevelDB writes, so a kill -9 in between left an index that
 * disagreed with its items. Its PutItem/UpdateItem/DeleteItem (and BatchWriteItem, which runs
 * them) call `db.updateIndexes(...)` and then, in its callback, `itemDb.put/del(...)`. The
 * replacement `updateIndexes` only notes the index operations and answers at once; the item
 * database's put/del then write them and the item in one batch. Call once per store, from the
 * worker's `db.create` hook; `onWrite(table, before, after)` runs for each write (billing, watchers).
 */
export function atomicSingleWrites(store) {
  let pending;
  /** `key`: the item's key as dynalite stores it (db.createKey); undefined for a delete of a missing item, which changes no index. */
  const noteIndexes = (table, key, before, after) => {
    pending = key !== undefined ? { tableName: table.TableName, key, ops: indexOperations(table, before, after) } : undefined;
  };
  const take = (tableName, key) => {
    const p = pending;
    pending = undefined;
    if (!p) return [];
    if (p.tableName !== tableName || p.key !== key) throw new Error(`index operations of ${p.tableName}/${p.key} met the write of ${tableName}/${key}`);
    return p.ops;
  };
  const patched = new WeakSet();
  const getItemDb = store.getItemDb;
  store.getItemDb = function (name) {
    const itemDb = getItemDb.call(this, name);
    if (patched.has(itemDb)) return itemDb;
    patched.add(itemDb);
    itemDb.put = (key, value, cb) => store.db.batch([...take(name, key), { type: 'put', key: itemKey(name, key), value }], cb);
    itemDb.del = (key, cb) => store.db.batch([...take(name, key), { type: 'del', key: itemKey(name, key) }], cb);
    return itemDb;
  };
  return { noteIndexes };
}
