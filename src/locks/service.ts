// The lock service: acquire (waiting with bounded backoff), renew, release, release everything a
// transaction's scope holds, inspect. Decisions come from src/core/locks.ts; this module sequences
// reads, conditional writes, the transaction log checks that guard lease takeovers, and the
// on-demand deadlock detection of long waits.
import {
  type AcquireRequest,
  type BackoffPolicy,
  DEFAULT_BACKOFF,
  type Grant,
  LOCK_LIMITS,
  type LockItem,
  type LockMode,
  type OwnerRef,
  type OwnerVerdict,
  backoffMs,
  decideAcquire,
  decideRelease,
  decideRenew,
  ownerKey,
  parseOwnerKey,
  withoutWaiter,
} from '../core/locks';
import type { Clock, LockStorePort, RandomSource, Sleep } from '../core/ports';
import { systemClock, systemRandom, systemSleep } from '../aws/system';
import type { TransactionPort } from './transactions';

export interface LockLogger {
  info(message: string, ...extra: unknown[]): void;
  warn(message: string, ...extra: unknown[]): void;
}

export interface LockServiceDeps {
  store: LockStorePort;
  /** Required for transaction owners: their status guards takeovers and ends their waits. */
  transactions?: TransactionPort;
  /** Runs deadlock detection now; called when a wait passes `detectAfterMs` (at most one at a time). */
  detect?: () => Promise<unknown>;
  /** A wait longer than this triggers detection, and again after each further such period. */
  detectAfterMs?: number;
  nowMs?: Clock;
  random?: RandomSource;
  sleep?: Sleep;
  /** How waiters poll (default DEFAULT_BACKOFF: 20 ms doubling to 400 ms). */
  backoff?: BackoffPolicy;
  logger?: LockLogger;
}

export interface AcquireInput {
  resource: string;
  owner: OwnerRef;
  mode: LockMode;
  /** Who inside the owner holds it: a participant service, 'coordinator', 'api'. */
  scope: string;
  leaseMs: number;
  /** 0: try once. Bounded by LOCK_LIMITS.maxWaitMs. */
  waitMs: number;
  /**
   * Told when this call starts waiting (true) and when it stops (false). A consumer uses it not to
   * count a parked waiter against its concurrency: otherwise waiting prepares can fill every slot
   * and starve the COMMIT/ABORT messages that would release the locks they wait for.
   */
  onWait?: (waiting: boolean) => void;
}

export class LockWaitTimeoutError extends Error {
  constructor(
    readonly resource: string,
    readonly blockers: string[],
    waitedMs: number,
  ) {
    super(`lock ${resource} is held by ${blockers.join(', ') || 'others'}; gave up after ${waitedMs} ms`);
    this.name = 'LockWaitTimeoutError';
  }
}

/** The waiting transaction was decided (aborted, say as a deadlock victim) while it waited. */
export class TransactionAbortedError extends Error {
  constructor(
    readonly txId: string,
    readonly resource: string,
    readonly status: string,
  ) {
    super(`transaction ${txId} is ${status}: stopped waiting for ${resource}`);
    this.name = 'TransactionAbortedError';
  }
}

export class LeaseLostError extends Error {
  constructor(
    readonly resource: string,
    readonly owner: string,
  ) {
    super(`${owner} no longer holds ${resource}: its lease ran out and the lock was taken over, or it was released`);
    this.name = 'LeaseLostError';
  }
}

export interface LockView {
  resource: string;
  /** The last fencing token granted on the resource. */
  token: number;
  mode?: LockMode;
  owners: { owner: string; kind: OwnerRef['kind']; mode: LockMode; token: number; leaseUntil: string; grantedAt: string; scopes: string[] }[];
  waiters: { owner: string; kind: OwnerRef['kind']; mode: LockMode; since: string; until: string }[];
}

/** Conflicting writes retried in a row before a short pause: contention, not a bug. */
const CONFLICTS_BEFORE_PAUSE = 3;
/** Any single operation's read-decide-write rounds; waits end on time long before this. */
const MAX_ROUNDS = 100_000;
const MAX_RELEASE_ROUNDS = 200;
const RELEASE_CONCURRENCY = 8;
export const DEFAULT_DETECT_AFTER_MS = 1_000;
/** A waiting transaction reads its own status at most this often: how soon it stops once aborted. */
export const STATUS_CHECK_MS = 300;

export class LockService {
  private readonly now: Clock;
  private readonly random: RandomSource;
  private readonly sleep: Sleep;
  private readonly detectAfterMs: number;
  private readonly backoff: BackoffPolicy;
  private detection: Promise<unknown> | undefined;

  constructor(private readonly deps: LockServiceDeps) {
    this.now = deps.nowMs ?? systemClock;
    this.random = deps.random ?? systemRandom;
    this.sleep = deps.sleep ?? systemSleep;
    this.detectAfterMs = deps.detectAfterMs ?? DEFAULT_DETECT_AFTER_MS;
    this.backoff = deps.backoff ?? DEFAULT_BACKOFF;
  }

  get store(): LockStorePort {
    return this.deps.store;
  }

  /**
   * Acquire `resource` in `mode`, waiting up to `waitMs`. A transaction owner's resource is noted in
   * its release index first, so commit/abort/Finalize release it whatever happens next.
   */
  async acquire(input: AcquireInput): Promise<Grant> {
    checkInput(input);
    let parked = false;
    try {
      return await this.acquireWaiting(input, () => {
        if (parked) return;
        parked = true;
        input.onWait?.(true);
      });
    } finally {
      if (parked) input.onWait?.(false);
    }
  }

  private async acquireWaiting(input: AcquireInput, park: () => void): Promise<Grant> {
    const { resource, owner, mode, scope, leaseMs } = input;
    const me = ownerKey(owner);
    const startMs = this.now();
    const waitUntilMs = startMs + input.waitMs;
    if (owner.kind === 'tx' && !this.deps.transactions) throw new Error('a transaction owner needs the transaction log (LockServiceDeps.transactions)');
    // The held-list entry must exist before any grant is written (releaseAll finds locks through it),
    // not before the first read: the two go out together, one round trip instead of two.
    const held = owner.kind === 'tx' ? this.deps.store.addHeld(me, scope, resource, startMs) : undefined;
    const verdicts = new Map<string, OwnerVerdict>();
    let conflicts = 0;
    let attempt = 0;
    let nextDetectMs = startMs + this.detectAfterMs;
    let nextStatusMs = startMs;
    for (let round = 0; round < MAX_ROUNDS; round++) {
      // After the first round `held` is settled: waiting on it again costs nothing.
      const [item] = await Promise.all([this.deps.store.get(resource), held]);
      const nowMs = this.now();
      const request: AcquireRequest = { owner, mode, scope, leaseMs, waitUntilMs, nowMs };
      const decision = decideAcquire(item, request, verdicts);
      // 'protected' (COMMITTING) is only true for now: look again next round.
      for (const [key, v] of verdicts) if (v === 'protected') verdicts.delete(key);
      if (decision.kind === 'check') {
        await this.judge(decision.owners, resource, verdicts);
        continue;
      }
      if (decision.kind === 'granted') {
        if (await this.deps.store.put(decision.next, item.version, nowMs)) {
          if (decision.takenOver.length > 0) this.deps.logger?.info('lock taken over from expired owners', { resource, owner: me, takenOver: decision.takenOver });
          return decision.grant;
        }
        if (++conflicts % CONFLICTS_BEFORE_PAUSE === 0) await this.sleep(backoffMs(0, this.random()));
        continue;
      }
      if (nowMs >= waitUntilMs) {
        // Out of time (or a try-once): no waiter entry to leave behind, none written for a try-once.
        if (item.waiters[me]) await this.stopWaiting(resource, owner);
        throw new LockWaitTimeoutError(resource, decision.blockers, nowMs - startMs);
      }
      if (decision.next && !(await this.deps.store.put(decision.next, item.version, nowMs))) continue;
      if (owner.kind === 'tx' && nowMs >= nextStatusMs) {
        nextStatusMs = nowMs + STATUS_CHECK_MS;
        const tx = await this.deps.transactions!.get(owner.id);
        if (tx?.status !== 'PREPARING') {
          await this.stopWaiting(resource, owner);
          throw new TransactionAbortedError(owner.id, resource, tx?.status ?? 'unknown (no record)');
        }
      }
      if (owner.kind === 'tx' && nowMs >= nextDetectMs) {
        nextDetectMs = nowMs + this.detectAfterMs;
        await this.detectNow();
        // This transaction may be the victim, or the cycle may be gone: look again at once.
        nextStatusMs = 0;
        continue;
      }
      park();
      await this.sleep(Math.max(1, Math.min(backoffMs(attempt++, this.random(), this.backoff), waitUntilMs - nowMs)));
    }
    throw new Error(`acquire ${resource} for ${me} did not finish within ${MAX_ROUNDS} rounds`);
  }

  /** Extend the lease; LeaseLostError if the owner no longer holds the resource. */
  async renew(resource: string, owner: OwnerRef, leaseMs: number): Promise<Grant> {
    checkLease(leaseMs);
    for (let round = 0; round < MAX_RELEASE_ROUNDS; round++) {
      const item = await this.deps.store.get(resource);
      const nowMs = this.now();
      const decision = decideRenew(item, owner, leaseMs, nowMs);
      if (decision.kind === 'lost') throw new LeaseLostError(resource, ownerKey(owner));
      if (await this.deps.store.put(decision.next, item.version, nowMs)) return decision.grant;
    }
    throw new Error(`renew ${resource}: too much contention (${MAX_RELEASE_ROUNDS} conflicting writes)`);
  }

  /** Release `scope`'s hold (and waiter entry) of `owner`; false when it held nothing. */
  async release(resource: string, owner: OwnerRef, scope: string): Promise<boolean> {
    return this.update(resource, (item) => decideRelease(item, owner, scope));
  }

  /** Release everything `owner`'s `scope` locked as a transaction (commit, abort, Finalize). */
  async releaseAll(owner: OwnerRef, scope: string): Promise<string[]> {
    const me = ownerKey(owner);
    const resources = await this.deps.store.held(me, scope);
    const released: string[] = [];
    for (let i = 0; i < resources.length; i += RELEASE_CONCURRENCY) {
      const batch = resources.slice(i, i + RELEASE_CONCURRENCY);
      await Promise.all(
        batch.map(async (r) => {
          await this.release(r, owner, scope);
          released.push(r);
        }),
      );
    }
    await this.deps.store.forgetHeld(me, scope, released);
    return released.sort();
  }

  /** Renew every lock `owner`'s `scope` holds; answers those it no longer holds. */
  async renewAll(owner: OwnerRef, scope: string, leaseMs: number): Promise<string[]> {
    const lost: string[] = [];
    for (const resource of await this.deps.store.held(ownerKey(owner), scope)) {
      try {
        await this.renew(resource, owner, leaseMs);
      } catch (err) {
        if (!(err instanceof LeaseLostError)) throw err;
        lost.push(resource);
      }
    }
    return lost;
  }

  async inspect(resource: string): Promise<LockView | undefined> {
    const item = await this.deps.store.get(resource);
    return item.version === 0 ? undefined : view(item);
  }

  /** Run detection unless a run from this process is already under way. */
  async detectNow(): Promise<void> {
    if (!this.deps.detect) return;
    if (!this.detection) {
      this.detection = this.deps.detect().finally(() => {
        this.detection = undefined;
      });
    }
    await this.detection.catch((err: unknown) => this.deps.logger?.warn('on-demand deadlock detection failed', { error: err as Error }));
  }

  /**
   * The fate of expired transaction owners. A lease never frees the lock of an owner that may still
   * commit: PREPARING is aborted first (the conditional decision write, so it cannot commit after
   * this), COMMITTING keeps its lock until it finishes, the rest can no longer commit.
   */
  private async judge(owners: string[], resource: string, verdicts: Map<string, OwnerVerdict>): Promise<void> {
    const transactions = this.deps.transactions;
    for (const key of owners) {
      const { id } = parseOwnerKey(key);
      if (!transactions) {
        // Without the log nothing can be known about the owner: treat it as one that may commit.
        verdicts.set(key, 'protected');
        continue;
      }
      let tx = await transactions.get(id);
      if (tx?.status === 'PREPARING') {
        tx = (await transactions.abort(id, `its lock on ${resource} expired while it was preparing`)).record;
        this.deps.logger?.info('aborted a preparing transaction whose lock lease expired', { resource, txId: id, status: tx?.status });
      }
      verdicts.set(key, tx?.status === 'COMMITTING' || tx?.status === 'PREPARING' ? 'protected' : 'removable');
    }
  }

  private async stopWaiting(resource: string, owner: OwnerRef): Promise<void> {
    await this.update(resource, (item) => withoutWaiter(item, owner));
  }

  /** Read, apply `change`, write on the version read; retried on conflicts. False when there was nothing to change. */
  private async update(resource: string, change: (item: LockItem) => LockItem | undefined): Promise<boolean> {
    for (let round = 0; round < MAX_RELEASE_ROUNDS; round++) {
      const item = await this.deps.store.get(resource);
      const next = change(item);
      if (!next) return false;
      if (await this.deps.store.put(next, item.version, this.now())) return true;
      if ((round + 1) % CONFLICTS_BEFORE_PAUSE === 0) await this.sleep(backoffMs(Math.floor(round / CONFLICTS_BEFORE_PAUSE), this.random()));
    }
    throw new Error(`update of lock ${resource}: too much contention (${MAX_RELEASE_ROUNDS} conflicting writes)`);
  }
}

function checkLease(leaseMs: number): void {
  if (!Number.isInteger(leaseMs) || leaseMs < LOCK_LIMITS.minLeaseMs || leaseMs > LOCK_LIMITS.maxLeaseMs) {
    throw new RangeError(`leaseMs must be an integer from ${LOCK_LIMITS.minLeaseMs} to ${LOCK_LIMITS.maxLeaseMs}, got ${leaseMs}`);
  }
}

function checkInput(input: AcquireInput): void {
  checkLease(input.leaseMs);
  if (!Number.isInteger(input.waitMs) || input.waitMs < 0 || input.waitMs > LOCK_LIMITS.maxWaitMs) {
    throw new RangeError(`waitMs must be an integer from 0 to ${LOCK_LIMITS.maxWaitMs}, got ${input.waitMs}`);
  }
  if (input.mode !== 'S' && input.mode !== 'X') throw new RangeError(`mode must be S or X, got ${String(input.mode)}`);
  if (!input.scope || input.scope.length > LOCK_LIMITS.scopeChars) throw new RangeError(`scope must be 1-${LOCK_LIMITS.scopeChars} characters`);
}

export function view(item: LockItem): LockView {
  const owners = Object.entries(item.owners).map(([key, h]) => ({
    owner: parseOwnerKey(key).id,
    kind: parseOwnerKey(key).kind,
    mode: h.mode,
    token: h.token,
    leaseUntil: new Date(h.leaseUntilMs).toISOString(),
    grantedAt: new Date(h.grantedAtMs).toISOString(),
    scopes: h.scopes,
  }));
  const mode = owners.some((o) => o.mode === 'X') ? 'X' : owners.length > 0 ? 'S' : undefined;
  return {
    resource: item.resource,
    token: item.token,
    ...(mode ? { mode } : {}),
    owners,
    waiters: Object.entries(item.waiters).map(([key, w]) => ({
      owner: parseOwnerKey(key).id,
      kind: parseOwnerKey(key).kind,
      mode: w.mode,
      since: new Date(w.sinceMs).toISOString(),
      until: new Date(w.untilMs).toISOString(),
    })),
  };
}
