// lock() in the participant SDK, with the demo inventory on dynalite and a real reply queue:
// locks are held from prepare through phase two (leases cover the undecided window), released
// after commit or abort, and a lock that cannot be had is a NO vote that leaves nothing behind.
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createDemoTables, demoParticipants, demoTableNames, demoViews, seedDemo } from '../../src/demo/shop';
import { skuLock } from '../../src/demo/inventory';
import { type ParticipantRunner, createRunner, documentClient } from '../../src/participant/runner';
import { PROTOCOL_VERSION } from '../../src/core/messages';
import { type LocalAws, startLocalAws } from '../support/aws';
import { memoryLogger } from '../support/fixtures';
import { type LockEnv, lockEnvOn } from './local';

const PREFIX = 'lockp-';
let local: LocalAws;
let env: LockEnv;
let replyQueueUrl: string;
let inventory: ParticipantRunner;

beforeAll(async () => {
  local = await startLocalAws({ sqs: true, tables: ['locks', 'log'] });
  env = lockEnvOn(local);
  await createDemoTables(local.dynamodb, { prefix: PREFIX });
  await seedDemo(local.dynamodb, { prefix: PREFIX, skus: 5, stock: 10, accounts: 1, balance: 100 });
  replyQueueUrl = await local.scratchQueue('lockp-replies');
  const participants = demoParticipants(documentClient(local.dynamodb), PREFIX);
  inventory = createRunner({
    participant: participants.inventory,
    replyQueueUrl,
    table: demoTableNames(PREFIX).inventory,
    sqs: local.sqs,
    dynamodb: local.dynamodb,
    logger: memoryLogger(),
    locks: env.service(),
    lockLeaseMs: 2_000,
  });
});
afterAll(async () => {
  await local?.stop();
});

const msg = (type: 'PREPARE' | 'COMMIT' | 'ABORT', txId: string, deadlineAt: number, operation?: unknown) => ({
  v: PROTOCOL_VERSION,
  type,
  txId,
  participant: 'inventory',
  deadlineAt,
  attempt: 1,
  ...(operation === undefined ? {} : { operation }),
});

describe('lock() in prepare', () => {
  it('holds the SKU locks from the YES vote through commit, with leases past the prepare deadline, then releases them', async () => {
    const tx = await env.newTx('sdk');
    const deadlineAt = Date.now() + 20_000;
    const outcome = await inventory.handle(msg('PREPARE', tx, deadlineAt, { items: [{ sku: 'sku-2', quantity: 1 }, { sku: 'sku-1', quantity: 2 }] }));
    expect(outcome).toMatchObject({ kind: 'vote', vote: 'YES' });
    for (const sku of ['sku-1', 'sku-2']) {
      const view = await env.store.get(skuLock(sku));
      const holder = view.owners[`tx#${tx}`];
      expect(holder).toMatchObject({ mode: 'X', scopes: ['inventory'] });
      // The 2 s lease was extended to cover the undecided window.
      expect(holder!.leaseUntilMs).toBeGreaterThanOrEqual(deadlineAt);
    }
    // The hold carries the token of its lock.
    const item = await documentClient(local.dynamodb).send(new GetCommand({ TableName: demoTableNames(PREFIX).inventory, Key: { pk: 'sku#sku-1' }, ConsistentRead: true }));
    expect(item.Item?.lastToken).toBe((await env.store.get(skuLock('sku-1'))).owners[`tx#${tx}`]!.token);

    await env.decideCommit(tx);
    expect(await inventory.handle(msg('COMMIT', tx, deadlineAt))).toMatchObject({ kind: 'ack', phase: 'COMMIT' });
    for (const sku of ['sku-1', 'sku-2']) expect((await env.store.get(skuLock(sku))).owners).toEqual({});
    expect(await env.store.held(`tx#${tx}`, 'inventory')).toEqual([]);
    expect(await demoViews(local.dynamodb, { prefix: PREFIX }).getInventory('sku-1')).toEqual({ sku: 'sku-1', available: 8, held: 0, sold: 2 });
    await local.replies(replyQueueUrl);
  });

  it('votes NO when the lock cannot be had before the deadline, and leaves no hold and no lock', async () => {
    const blocker = await env.newTx('blocker');
    await env.service().acquire({ resource: skuLock('sku-4'), owner: { kind: 'tx', id: blocker }, mode: 'X', scope: 'other', leaseMs: 30_000, waitMs: 0 });
    const tx = await env.newTx('late');
    const outcome = await inventory.handle(msg('PREPARE', tx, Date.now() + 1_000, { items: [{ sku: 'sku-3', quantity: 1 }, { sku: 'sku-4', quantity: 1 }] }));
    expect(outcome).toMatchObject({ kind: 'vote', vote: 'NO' });
    expect(outcome.kind === 'vote' && outcome.reason).toMatch(/lock inventory\/sku\/sku-4 is held by tx#blocker/);
    // The barrier ran abort after the NO: the hold on sku-3 and its lock are gone.
    expect(await demoViews(local.dynamodb, { prefix: PREFIX }).getInventory('sku-3')).toEqual({ sku: 'sku-3', available: 10, held: 0, sold: 0 });
    expect((await env.store.get(skuLock('sku-3'))).owners).toEqual({});
    expect((await env.store.get(skuLock('sku-4'))).waiters).toEqual({});
    expect(Object.keys((await env.store.get(skuLock('sku-4'))).owners)).toEqual([`tx#${blocker}`]);
    await local.replies(replyQueueUrl);
  });

  it('stops waiting and votes NO as soon as its transaction is aborted', async () => {
    const blocker = await env.newTx('blocker');
    await env.service().acquire({ resource: skuLock('sku-5'), owner: { kind: 'tx', id: blocker }, mode: 'X', scope: 'other', leaseMs: 30_000, waitMs: 0 });
    const tx = await env.newTx('victim');
    const started = Date.now();
    const pending = inventory.handle(msg('PREPARE', tx, Date.now() + 20_000, { items: [{ sku: 'sku-5', quantity: 1 }] }));
    // Abort only once it is waiting for the lock, so that the abort is what ends the wait.
    await vi.waitFor(async () => expect(Object.keys((await env.store.get(skuLock('sku-5'))).waiters)).toEqual([`tx#${tx}`]), { timeout: 2_000, interval: 20 });
    await env.log.decideAbort(tx, 'chosen as a victim', new Date().toISOString());
    const outcome = await pending;
    expect(outcome).toMatchObject({ kind: 'vote', vote: 'NO' });
    expect(outcome.kind === 'vote' && outcome.reason).toMatch(/is ABORTING: stopped waiting/);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect((await env.store.get(skuLock('sku-5'))).waiters).toEqual({});
    await local.replies(replyQueueUrl);
  });
});
