// Least privilege, derived instead of pinned: every Lambda handler runs in process on the embedded
// stack (provisioned from the same synthesized template) through the routes and branches it can take
// (start with and without an Idempotency-Key and declared resources, replay, list, read, wait, the
// outcome route, abort, an operator's release, every lock route and a lock wait long enough to detect
// in process, votes, a NO, acknowledgements, a forged reply, a duplicate, a vote for an unknown
// transaction, deadlines, in doubt, a supervisor continuing as a new execution, a dead supervisor
// replaced by the sweeper, a deadlock the detector resolves). Every AWS SDK call is recorded with the
// function that made it (the local Lambda runtime's invocation, carried by AsyncLocalStorage) and
// mapped to its IAM action; each function's role in the template must grant every one of them, and
// grant nothing its code never needed (a short list of branches this test cannot reach is named, with
// the reason).
import { AsyncLocalStorage } from 'node:async_hooks';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildApp, loadCdkContext } from '../../cdk/build';
import { EventBridgeDecisionEvents } from '../../src/aws/events';
import { LockStore } from '../../src/aws/lock-store';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { LockService } from '../../src/locks/service';
import { Transactions } from '../../src/locks/transactions';
import { LocalLambda } from '../../src/local/lambda';
import { RUNS_PER_EXECUTION } from '../../src/supervisor';
import { orderBody, startHarness, type Harness } from '../e2e/harness';
import { functionRoles, statementsOf } from './roles';

type Json = Record<string, any>;

const CONTEXT = { participants: ['inventory', 'payment', 'shipping', 'order', 'silent'] };

/** The document client's commands, by the DynamoDB operation (and IAM action) each one is. */
const DOCUMENT_COMMANDS: Record<string, string> = {
  GetCommand: 'GetItem', PutCommand: 'PutItem', UpdateCommand: 'UpdateItem', DeleteCommand: 'DeleteItem',
  QueryCommand: 'Query', ScanCommand: 'Scan', BatchGetCommand: 'BatchGetItem', BatchWriteCommand: 'BatchWriteItem',
};
/** Batch operations are authorized by their single-message action. */
const SQS_BATCHES: Record<string, string> = { SendMessageBatch: 'SendMessage', DeleteMessageBatch: 'DeleteMessage', ChangeMessageVisibilityBatch: 'ChangeMessageVisibility' };
const SERVICE_OF_CLIENT: Record<string, string> = { DynamoDBClient: 'dynamodb', DynamoDBDocumentClient: 'dynamodb', SQSClient: 'sqs', SFNClient: 'states', EventBridgeClient: 'events' };

/** The IAM actions one SDK command needs; Query and Scan name their index (`dynamodb:Query@open`). */
function actionsOf(client: object, command: { constructor: { name: string }; input?: Json }): string[] {
  const service = SERVICE_OF_CLIENT[client.constructor.name];
  if (!service) throw new Error(`unknown SDK client ${client.constructor.name}: map it to its IAM service`);
  const name = command.constructor.name;
  if (name === 'TransactWriteCommand' || name === 'TransactWriteItemsCommand') {
    // Authorized item by item: each Put, Update, Delete or ConditionCheck by its own action.
    const kinds = { Put: 'PutItem', Update: 'UpdateItem', Delete: 'DeleteItem', ConditionCheck: 'ConditionCheckItem' } as Record<string, string>;
    return (command.input?.TransactItems as Json[]).flatMap((item) => Object.keys(item).map((k) => `dynamodb:${kinds[k]}`));
  }
  const operation = DOCUMENT_COMMANDS[name] ?? name.replace(/Command$/, '');
  const action = `${service}:${SQS_BATCHES[operation] ?? operation}`;
  const index = command.input?.IndexName as string | undefined;
  return [index ? `${action}@${index}` : action];
}

/**
 * Granted but not reached here, each with why: a branch that needs hours, or a state the embedded
 * stack cannot be put in from outside. Anything else granted and never called fails the test.
 */
const UNREACHED: Record<string, Record<string, string>> = {
  'lambdas/api.ts': {
    // ensureSupervisor reads a group's record and describes its execution only when the group's
    // execution name is taken by a closed execution; an api instance starts each group once.
    'states:DescribeExecution': 'a start in a group whose supervisor ended, in an api instance that has not started that group yet',
  },
  'lambdas/supervise.ts': {
    'states:DescribeExecution': "parking: the parking group's supervisor, found closed (after PARK_AFTER_MS of a participant's outage)",
    'dynamodb:GetItem':
      "the parking group's record (as above), and the release index of a transaction with declared resources that supervision finishes (its finisher crashed after the last acknowledgement)",
  },
};

/** Actions Lambda's SQS event source mapping uses on the function's behalf (granted by CDK with the mapping). */
const MAPPING_ACTIONS = ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage'];

let h: Harness;
let template: Template;
const running = new AsyncLocalStorage<string>();
/** Function name (as the embedded stack names it) -> every action its invocations needed. */
const used = new Map<string, Set<string>>();
const restore: (() => void)[] = [];

beforeAll(async () => {
  template = Template.fromStack(buildApp({ bundle: false, context: loadCdkContext(CONTEXT) }).coordinator);
  h = await startHarness({ context: CONTEXT });
  // Every invocation (API routes, event source mappings, schedules, state machine tasks) goes through LocalLambda.invoke.
  const invoke = LocalLambda.prototype.invoke;
  LocalLambda.prototype.invoke = function (this: LocalLambda, nameOrArn: string, payload: unknown) {
    const name = nameOrArn.includes(':function:') ? nameOrArn.split(':function:')[1]!.split(':')[0]! : nameOrArn;
    return running.run(name, () => invoke.call(this, nameOrArn, payload));
  };
  restore.push(() => (LocalLambda.prototype.invoke = invoke));
  const record = (fn: string, actions: string[]) => {
    const set = used.get(fn) ?? new Set<string>();
    for (const a of actions) set.add(a);
    used.set(fn, set);
  };
  // Every SDK v3 client shares this base class and its send.
  const base = Object.getPrototypeOf(DynamoDBClient.prototype) as { send: (...args: unknown[]) => unknown };
  const send = base.send;
  base.send = function (this: object, ...args: unknown[]) {
    const fn = running.getStore();
    // PutEvents is the publisher's, below: here every handler shares one events buffer, and any
    // invocation's end flushes what waits in it (on AWS each function's container flushes its own).
    if (fn !== undefined && (args[0] as { constructor: { name: string } }).constructor.name !== 'PutEventsCommand') record(fn, actionsOf(this, args[0] as never));
    return send.apply(this, args);
  };
  restore.push(() => (base.send = send));
  const publish = EventBridgeDecisionEvents.prototype.publish;
  EventBridgeDecisionEvents.prototype.publish = function (this: EventBridgeDecisionEvents, event) {
    const fn = running.getStore();
    if (fn !== undefined) record(fn, ['events:PutEvents']);
    return publish.call(this, event);
  };
  restore.push(() => (EventBridgeDecisionEvents.prototype.publish = publish));
}, 120_000);

afterAll(async () => {
  for (const r of restore.reverse()) r();
  await h?.stop();
});

/** The physical name the embedded stack gives a function of the coordinator stack -> its entry. */
function entryOfFunction(name: string): string | undefined {
  const [stack, ...rest] = name.split('-');
  if (stack !== 'DtcCoordinator') return undefined;
  return functionRoles(template).find((f) => f.id === rest.join('-'))?.entry;
}

/** A function's granted actions (logs and X-Ray aside), Query/Scan per index as `action@index`. */
function granted(entry: string): Set<string> {
  const out = new Set<string>();
  for (const s of statementsOf(template, entry)) {
    const resources = JSON.stringify(s.Resource);
    for (const action of [s.Action].flat() as string[]) {
      if (action.startsWith('logs:') || action.startsWith('xray:')) continue;
      if (action === 'dynamodb:Query' || action === 'dynamodb:Scan') {
        for (const index of resources.matchAll(/\/index\/([A-Za-z0-9_.-]+)/g)) out.add(`${action}@${index[1]}`);
      } else out.add(action);
    }
  }
  return out;
}

const fn = (entry: string) => functionRoles(template).find((f) => f.entry === entry)!.id;

describe('each function may do exactly what its code does', () => {
  it('drives every handler through its routes and branches, then checks every role against what was called', async () => {
    const body = (extra: boolean, resources?: string[], timeouts = { prepareSeconds: 60, commitSeconds: 2 }) => {
      const b = orderBody({ items: [{ sku: 'sku-60', quantity: 1 }], account: 'acct-60', amount: 10, ...(extra ? { extra: [{ service: 'silent', operation: {} }] } : {}) }, timeouts).body;
      if (resources) b.participants[0] = { ...b.participants[0]!, resources } as never;
      return b;
    };
    const silent = h.stack.outputs.replyQueueUrls.silent!;

    // api: a start with a key and a declared resource, its replay, reads, the listing, the outcome route.
    const keyedBody = body(false, ['perm-r1']);
    const keyed = await h.request('POST', '/transactions', keyedBody, { 'Idempotency-Key': 'perm-1' });
    expect(keyed.status).toBe(202);
    expect((await h.request('POST', '/transactions', keyedBody, { 'Idempotency-Key': 'perm-1' })).body.txId).toBe(keyed.body.txId);
    expect((await h.waitForEnd(keyed.body.txId)).status).toBe('COMMITTED');
    expect((await h.request('GET', '/transactions?limit=5')).status).toBe(200);
    expect((await h.request('GET', `/transactions/${keyed.body.txId}?wait=1`)).status).toBe(200);
    expect((await h.request('GET', `/transactions/${keyed.body.txId}/decision`)).status).toBe(200);

    // api: abort; reply: a vote for it afterwards (a duplicate re-drive), a forged reply, a vote for an unknown transaction.
    const aborted = await h.request('POST', '/transactions', body(true));
    expect((await h.request('POST', `/transactions/${aborted.body.txId}/abort`, { reason: 'permissions test' })).status).toBe(202);
    await h.sendRaw(silent, { v: 1, type: 'VOTE', txId: aborted.body.txId, participant: 'silent', vote: 'YES' });
    await h.sendRaw(silent, { v: 1, type: 'VOTE', txId: aborted.body.txId, participant: 'inventory', vote: 'YES' });
    await h.sendRaw(silent, { v: 1, type: 'VOTE', txId: 'perm-unknown-0001', participant: 'silent', vote: 'YES' });
    await h.sendRaw(silent, { v: 1, type: 'ACK', txId: aborted.body.txId, participant: 'silent', phase: 'ABORT' });

    // reply and supervise: silent votes YES and never acknowledges: re-sends, in doubt; an operator releases it (api).
    const doubted = await h.request('POST', '/transactions', body(true, undefined, { prepareSeconds: 60, commitSeconds: 1 }));
    await h.sendRaw(silent, { v: 1, type: 'VOTE', txId: doubted.body.txId, participant: 'silent', vote: 'YES' });
    const log = new TxLog(documentClient(h.stack.dynamodb), h.stack.outputs.txTable);
    await vi.waitFor(async () => expect((await log.get(doubted.body.txId))?.inDoubtSince).toBeDefined(), { timeout: 60_000, interval: 250 });
    const released = await h.request('POST', `/transactions/${doubted.body.txId}/release`, { participant: 'silent', operator: 'permissions test', reason: 'retired' });
    expect(released.status).toBe(200);

    // supervise: a deadline abort, and a run that continues as a new execution.
    const late = await h.request('POST', '/transactions', body(true, undefined, { prepareSeconds: 1, commitSeconds: 30 }));
    await vi.waitFor(async () => expect((await log.get(late.body.txId))?.decision).toBe('ABORT'), { timeout: 30_000, interval: 250 });
    const open = await h.request('POST', '/transactions', body(true));
    const openGroup = (await log.get(open.body.txId))!.og!;
    await h.stack.lambda.invoke(`DtcCoordinator-${fn('lambdas/supervise.ts')}`, { group: openGroup, gen: 0, runs: RUNS_PER_EXECUTION - 1 });

    // sweeper: a group whose supervisor was stopped gets a new generation.
    const supervisors = h.stack.stepFunctions.listExecutions({ stateMachineArn: h.stack.outputs.stateMachineArn, statusFilter: 'RUNNING' }).filter((e) => e.name === openGroup || e.name.startsWith(`${openGroup}-g`));
    expect(supervisors.length).toBeGreaterThanOrEqual(1);
    for (const e of supervisors) h.stack.stepFunctions.stopExecution(e.executionArn);
    await vi.waitFor(() => expect(used.get(`DtcCoordinator-${fn('lambdas/sweeper.ts')}`)?.has('dynamodb:PutItem')).toBe(true), { timeout: 30_000, interval: 250 });

    // api: a start that waits for a declared resource long enough to run detection in process, then gives up and aborts.
    await h.request('POST', '/transactions', body(true, ['perm-r2']));
    const blocked = await h.request('POST', '/transactions', body(true, ['perm-r2']));
    expect((await log.get(blocked.body.txId))?.decisionReason).toBe('could not lock perm-r2 in time');

    // api: the lock routes.
    await h.waitForEnd(aborted.body.txId, 60_000);
    expect((await h.request('POST', '/locks/perm-l1', { owner: 'alice', leaseSeconds: 30 })).status).toBe(200);
    expect((await h.request('PUT', '/locks/perm-l1', { owner: 'alice', leaseSeconds: 30 })).status).toBe(200);
    expect((await h.request('GET', '/locks/perm-l1')).status).toBe(200);
    expect((await h.request('POST', '/locks/perm-l1', { owner: 'bob', leaseSeconds: 30, waitSeconds: 2 })).status).toBe(409);
    expect((await h.request('DELETE', '/locks/perm-l1?owner=alice')).status).toBe(200);
    expect((await h.request('GET', '/deadlocks?limit=5')).status).toBe(200);

    // detector: two open transactions waiting for each other's lock.
    const [t1, t2] = await Promise.all([h.request('POST', '/transactions', body(true)), h.request('POST', '/transactions', body(true))]);
    const store = new LockStore(documentClient(h.stack.dynamodb), h.stack.outputs.lockTable);
    const locks = new LockService({ store, transactions: new Transactions(log, { abort: async () => ({ kind: 'unknown' }) }), detectAfterMs: 600_000 });
    const hold = (resource: string, id: string, waitMs: number) => locks.acquire({ resource, owner: { kind: 'tx', id }, mode: 'X', scope: 'test', leaseMs: 60_000, waitMs });
    await hold('perm-a', t1!.body.txId, 0);
    await hold('perm-b', t2!.body.txId, 0);
    const waits = [hold('perm-b', t1!.body.txId, 8_000).catch((e: unknown) => e), hold('perm-a', t2!.body.txId, 8_000).catch((e: unknown) => e)];
    await vi.waitFor(async () => expect((await store.waiting()).length).toBe(2), { timeout: 10_000, interval: 100 });
    // The detector runs every second on the embedded stack: it finds the cycle and aborts the younger.
    await vi.waitFor(
      async () => expect((await log.getMany([t1!.body.txId, t2!.body.txId])).map((r) => r.decisionReason ?? '').filter((r) => r.startsWith('deadlock victim'))).toHaveLength(1),
      { timeout: 20_000, interval: 200 },
    );
    await Promise.all(waits);

    // What each function's code called, against what its role grants.
    const calls = new Map<string, Set<string>>();
    for (const [name, actions] of used) {
      const entry = entryOfFunction(name);
      if (entry) calls.set(entry, new Set([...(calls.get(entry) ?? []), ...actions]));
    }
    const entries = functionRoles(template).map((f) => f.entry);
    expect([...calls.keys()].sort()).toEqual(entries.sort());
    for (const entry of entries) {
      const needed = [...calls.get(entry)!].sort();
      const grants = granted(entry);
      expect({ entry, missing: needed.filter((a) => !grants.has(a)) }).toEqual({ entry, missing: [] });
      const allowed = new Set([...needed, ...Object.keys(UNREACHED[entry] ?? {}), ...(entry === 'lambdas/reply.ts' ? MAPPING_ACTIONS : [])]);
      expect({ entry, unused: [...grants].filter((a) => !allowed.has(a)).sort() }).toEqual({ entry, unused: [] });
      // The named exceptions must still be granted, or the list is stale. Whether a run reaches one
      // depends on timing (a loaded machine can end a group's supervisor before a start): not checked.
      for (const a of Object.keys(UNREACHED[entry] ?? {})) expect({ entry, a, granted: grants.has(a) }).toEqual({ entry, a, granted: true });
    }
  }, 300_000);
});
