// The lock table's rules, as pure functions over one lock item. No I/O and no clock: callers pass
// `nowMs` and what the transaction log says about expired owners. The adapter (src/aws/lock-store.ts)
// writes whatever these functions return with one conditional write on the item's version, so every
// change is computed from the state it replaces.
//
// Rules:
// - Shared (S) and exclusive (X) modes; an owner's second acquire is re-entrant (it keeps its token),
//   S -> X is an upgrade (a new grant, a new token) when nobody else holds the resource.
// - A lease that ran out frees the lock of a standalone owner at once. For a transaction owner it
//   only makes the owner a *candidate*: the caller must first learn from the transaction log that
//   the owner can no longer commit (verdict 'removable'); an owner that may still commit
//   ('protected', i.e. COMMITTING) keeps its lock however old its lease. TTL plays no part here.
// - Every grant raises the resource's fencing token: max(previous + 1, nowMs). The clock floor keeps
//   tokens rising even after TTL collected an idle item (its next token is still higher).
// - A requester that must wait is recorded in `waiters` (owner key -> since): the wait-for edges.
import { mutated } from './mutations';
import { z } from 'zod';

export type LockMode = 'S' | 'X';
export const LOCK_MODES = ['S', 'X'] as const;

/** Who holds or waits: a transaction (its txId), or a standalone owner of the lock API. */
export type OwnerKind = 'tx' | 'owner';
export interface OwnerRef {
  kind: OwnerKind;
  id: string;
}

/** Bounds on everything a caller chooses. */
export const LOCK_LIMITS = {
  resourceChars: 200,
  ownerChars: 128,
  scopeChars: 64,
  /** Owners of one resource at once (shared mode): keeps an item far below DynamoDB's 400 KB. */
  maxOwners: 100,
  /** Waiters recorded on one resource: past this, requesters wait without an edge (see waitEntry). */
  maxWaiters: 200,
  minLeaseMs: 1_000,
  maxLeaseMs: 3_600_000,
  maxWaitMs: 900_000,
} as const;

export const resourceName = z
  .string()
  .min(1)
  .max(LOCK_LIMITS.resourceChars)
  .regex(/^[A-Za-z0-9_.:/#@+=-]+$/, 'must be 1-200 letters, digits or _.:/#@+=-')
  // The lock table's own key prefixes: such a name would collide with a release index or a record.
  .refine((r) => !r.startsWith('held#') && !r.startsWith('deadlock#'), 'must not start with held# or deadlock#');
export const ownerName = z
  .string()
  .min(1)
  .max(LOCK_LIMITS.ownerChars)
  .regex(/^[A-Za-z0-9_.:@-]+$/, 'must be 1-128 letters, digits or _.:@-');

export const ownerKey = (o: OwnerRef): string => `${o.kind}#${o.id}`;

export function parseOwnerKey(key: string): OwnerRef {
  const i = key.indexOf('#');
  const kind = key.slice(0, i);
  if (i < 1 || (kind !== 'tx' && kind !== 'owner')) throw new Error(`not an owner key: ${key}`);
  return { kind, id: key.slice(i + 1) };
}

export interface Holder {
  mode: LockMode;
  /** The fencing token of this owner's grant. */
  token: number;
  leaseUntilMs: number;
  grantedAtMs: number;
  /** Who inside the owner holds it (a participant service, 'coordinator', 'api'); released per scope. */
  scopes: string[];
}

export interface Waiter {
  mode: LockMode;
  sinceMs: number;
  /** When the waiter gives up: an entry past it is stale (its waiter crashed) and is pruned. */
  untilMs: number;
}

/** One lock table item. `version` 0 means the item does not exist yet. */
export interface LockItem {
  resource: string;
  version: number;
  /** The last fencing token granted on this resource (0: never granted). */
  token: number;
  owners: Record<string, Holder>;
  waiters: Record<string, Waiter>;
}

/** TTL only collects garbage: idle lock items, release indexes and deadlock records after this long. */
export const LOCK_GC_DAYS = 30;

/** The sparse index of items with waiters is split over this many partitions, so none runs hot. */
export const WAIT_SHARDS = 8;

/** The waiters index partition of a resource: FNV-1a, a stable spread over WAIT_SHARDS. */
export function waitShard(resource: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < resource.length; i++) h = Math.imul(h ^ resource.charCodeAt(i), 0x01000193) >>> 0;
  return `waiting#${h % WAIT_SHARDS}`;
}

export const emptyLock = (resource: string): LockItem => ({ resource, version: 0, token: 0, owners: {}, waiters: {} });

/** What the transaction log says about an expired transaction owner. */
export type OwnerVerdict = 'removable' | 'protected';

export interface AcquireRequest {
  owner: OwnerRef;
  mode: LockMode;
  scope: string;
  leaseMs: number;
  /** When the requester stops waiting (recorded on its waiter entry). */
  waitUntilMs: number;
  nowMs: number;
}

export interface Grant {
  resource: string;
  mode: LockMode;
  token: number;
  leaseUntilMs: number;
}

export type AcquireDecision =
  /** Write `next`; on success the requester holds `grant`. */
  | { kind: 'granted'; next: LockItem; grant: Grant; reentrant: boolean; upgraded: boolean; takenOver: string[] }
  /** Expired transaction owners stand in the way: ask the log whether each may still commit. */
  | { kind: 'check'; owners: string[] }
  /** Wait; write `next` first if it is defined (the waiter entry, pruning). */
  | { kind: 'wait'; next: LockItem | undefined; blockers: string[] };

const conflicts = (a: LockMode, b: LockMode): boolean => a === 'X' || b === 'X';
const stronger = (a: LockMode, b: LockMode): LockMode => (a === 'X' || b === 'X' ? 'X' : 'S');

/** The next fencing token: above every earlier one, and above the clock (see the header). */
export function nextToken(item: Pick<LockItem, 'token'>, nowMs: number): number {
  return Math.max(item.token + 1, Math.floor(nowMs));
}

/**
 * Decide one acquire attempt. `verdicts` holds what the log said about expired transaction owners
 * (only their fate, never their lease, comes from outside).
 */
export function decideAcquire(item: LockItem, req: AcquireRequest, verdicts: ReadonlyMap<string, OwnerVerdict> = new Map()): AcquireDecision {
  const me = ownerKey(req.owner);
  const { pruned, takenOver } = prune(item, req.nowMs, verdicts, me);
  const mine = pruned.owners[me];
  const blockers = Object.entries(pruned.owners)
    .filter(([key, h]) => key !== me && conflicts(h.mode, req.mode))
    .map(([key]) => key);
  const unknown = blockers.filter((key) => {
    const h = pruned.owners[key]!;
    return parseOwnerKey(key).kind === 'tx' && h.leaseUntilMs <= req.nowMs && !verdicts.has(key);
  });
  if (unknown.length > 0) return { kind: 'check', owners: unknown };
  if (blockers.length === 0 && (mine || Object.keys(pruned.owners).length < LOCK_LIMITS.maxOwners)) {
    return grant(pruned, item, req, me, mine, takenOver);
  }
  const next = withWaiter(pruned, me, req);
  return { kind: 'wait', next: sameLock(next, item) ? undefined : next, blockers };
}

function grant(pruned: LockItem, original: LockItem, req: AcquireRequest, me: string, mine: Holder | undefined, takenOver: string[]): AcquireDecision {
  const leaseUntilMs = Math.max(mine?.leaseUntilMs ?? 0, req.nowMs + req.leaseMs);
  const mode = mine ? stronger(mine.mode, req.mode) : req.mode;
  const upgraded = mine !== undefined && mine.mode !== mode;
  // A re-entrant acquire is not a new grant: the owner keeps the token its writes already carry.
  const token = mine && !upgraded ? mine.token : nextToken(pruned, req.nowMs);
  const holder: Holder = {
    mode,
    token,
    leaseUntilMs,
    grantedAtMs: mine && !upgraded ? mine.grantedAtMs : req.nowMs,
    scopes: [...new Set([...(mine?.scopes ?? []), req.scope])].sort(),
  };
  const { [me]: _waiting, ...waiters } = pruned.waiters;
  const next: LockItem = { ...pruned, token: Math.max(pruned.token, token), owners: { ...pruned.owners, [me]: holder }, waiters };
  assertLockInvariants(next);
  return {
    kind: 'granted',
    next,
    grant: { resource: original.resource, mode, token, leaseUntilMs },
    reentrant: mine !== undefined,
    upgraded,
    takenOver,
  };
}

/**
 * Drop what may go: standalone owners past their lease, transaction owners past their lease that
 * the log says cannot commit, and waiter entries past their own deadline (their waiter is gone).
 */
function prune(item: LockItem, nowMs: number, verdicts: ReadonlyMap<string, OwnerVerdict>, me: string): { pruned: LockItem; takenOver: string[] } {
  const owners: Record<string, Holder> = {};
  const takenOver: string[] = [];
  for (const [key, h] of Object.entries(item.owners)) {
    const expired = h.leaseUntilMs <= nowMs && key !== me;
    const removable = expired && (parseOwnerKey(key).kind === 'owner' || verdicts.get(key) === 'removable' || mutated('leaseFreesPreparedLock'));
    if (removable) takenOver.push(key);
    else owners[key] = h;
  }
  const waiters = Object.fromEntries(Object.entries(item.waiters).filter(([key, w]) => key === me || w.untilMs > nowMs));
  return { pruned: { ...item, owners, waiters }, takenOver };
}

function withWaiter(item: LockItem, me: string, req: AcquireRequest): LockItem {
  const existing = item.waiters[me];
  if (!existing && Object.keys(item.waiters).length >= LOCK_LIMITS.maxWaiters) return item;
  const entry: Waiter = { mode: req.mode, sinceMs: existing?.sinceMs ?? req.nowMs, untilMs: req.waitUntilMs };
  return { ...item, waiters: { ...item.waiters, [me]: entry } };
}

/** Remove `owner`'s waiter entry (it stopped waiting); undefined when there is none. */
export function withoutWaiter(item: LockItem, owner: OwnerRef): LockItem | undefined {
  const me = ownerKey(owner);
  if (!item.waiters[me]) return undefined;
  const { [me]: _gone, ...waiters } = item.waiters;
  return { ...item, waiters };
}

/**
 * Release `scope`'s hold of `owner` (and its waiter entry). The owner stays while another scope of
 * it still holds the resource. Undefined when there is nothing to release.
 */
export function decideRelease(item: LockItem, owner: OwnerRef, scope: string): LockItem | undefined {
  const me = ownerKey(owner);
  const holder = item.owners[me];
  const base = withoutWaiter(item, owner) ?? item;
  if (!holder || !holder.scopes.includes(scope)) return base === item ? undefined : base;
  const scopes = holder.scopes.filter((s) => s !== scope);
  const { [me]: _released, ...others } = base.owners;
  return { ...base, owners: scopes.length > 0 ? { ...others, [me]: { ...holder, scopes } } : others };
}

export type RenewDecision = { kind: 'renewed'; next: LockItem; grant: Grant } | { kind: 'lost' };

/**
 * Extend `owner`'s lease to now + leaseMs (never shortens it). 'lost' when the owner no longer
 * holds the resource: its lease ran out and someone took the lock over, or it released it.
 */
export function decideRenew(item: LockItem, owner: OwnerRef, leaseMs: number, nowMs: number): RenewDecision {
  const me = ownerKey(owner);
  const holder = item.owners[me];
  if (!holder) return { kind: 'lost' };
  const leaseUntilMs = Math.max(holder.leaseUntilMs, nowMs + leaseMs);
  const next = { ...item, owners: { ...item.owners, [me]: { ...holder, leaseUntilMs } } };
  return { kind: 'renewed', next, grant: { resource: item.resource, mode: holder.mode, token: holder.token, leaseUntilMs } };
}

/** True when nothing holds or waits for the resource: the only state in which TTL may collect it. */
export const isIdle = (item: LockItem): boolean => Object.keys(item.owners).length === 0 && Object.keys(item.waiters).length === 0;

/** The invariant every stored item keeps: an exclusive owner is the only owner; tokens never exceed the item's. */
export function assertLockInvariants(item: LockItem): void {
  const owners = Object.entries(item.owners);
  if (owners.some(([, h]) => h.mode === 'X') && owners.length > 1) {
    throw new Error(`lock ${item.resource}: an exclusive owner shares the resource (${owners.map(([k, h]) => `${k}:${h.mode}`).join(', ')})`);
  }
  for (const [key, h] of owners) {
    if (h.token > item.token) throw new Error(`lock ${item.resource}: ${key} holds token ${h.token} above the item's ${item.token}`);
    if (h.scopes.length === 0) throw new Error(`lock ${item.resource}: ${key} holds it for no scope`);
  }
}

function sameLock(a: LockItem, b: LockItem): boolean {
  return JSON.stringify([a.owners, a.waiters, a.token]) === JSON.stringify([b.owners, b.waiters, b.token]);
}

// ---------------------------------------------------------------------------------------------
// Waiting

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

/** Every waiter polls its lock item: the cap bounds the load a crowd of waiters puts on one item. */
export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 20, maxMs: 400 };

/**
 * The pause before the next look at a contended lock: doubling from `initialMs`, capped at `maxMs`,
 * with "equal jitter" (half fixed, half random) so that waiters released together do not retry together.
 * `random` is in [0, 1).
 */
export function backoffMs(attempt: number, random: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(attempt, 20));
  return Math.max(1, Math.round(ceiling / 2 + (ceiling / 2) * random));
}
