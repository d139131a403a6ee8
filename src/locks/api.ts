// The lock service on its own, for services that only need mutual exclusion (no transaction):
// `/locks/{resource}` acquire, renew, release, inspect; and `GET /deadlocks`. Standalone owners are
// not transactions: their lease alone decides when their lock may be taken over (there is no 2PC
// decision to protect), so they must renew in time and carry the fencing token into their writes.
import { z } from 'zod';
import { LOCK_LIMITS, LOCK_MODES, type OwnerRef, ownerName, resourceName } from '../core/locks';
import { BadCursorError } from '../core/cursor';
import type { LockStorePort } from '../core/ports';
import { LeaseLostError, type LockService, LockWaitTimeoutError } from './service';

/** The API function has a 10 s timeout (and API Gateway 29 s): a request waits at most this long. */
export const API_MAX_WAIT_SECONDS = 5;
export const API_LOCK_SCOPE = 'api';

export interface ApiAnswer {
  status: number;
  body: unknown;
}

export interface FieldProblem {
  field: string;
  message: string;
}

const leaseSeconds = z
  .number()
  .int('must be a whole number of seconds')
  .min(LOCK_LIMITS.minLeaseMs / 1000)
  .max(LOCK_LIMITS.maxLeaseMs / 1000);

export const acquireBody = z.strictObject({
  owner: ownerName,
  mode: z.enum(LOCK_MODES).default('X'),
  leaseSeconds,
  waitSeconds: z.number().min(0).max(API_MAX_WAIT_SECONDS).default(0),
});
export const renewBody = z.strictObject({ owner: ownerName, leaseSeconds });
export const releaseBody = z.strictObject({ owner: ownerName });

const invalid = (fields: FieldProblem[]): ApiAnswer => ({
  status: 400,
  body: { error: { code: 'InvalidRequest', message: 'the request has invalid fields', fields } },
});

function parse<T>(schema: z.ZodType<T>, value: unknown): { ok: true; value: T } | { ok: false; answer: ApiAnswer } {
  const parsed = schema.safeParse(value);
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, answer: invalid(parsed.error.issues.map((i) => ({ field: i.path.join('.') || '(body)', message: i.message }))) };
}

function checkResource(resource: string): ApiAnswer | undefined {
  const parsed = resourceName.safeParse(resource);
  return parsed.success ? undefined : invalid([{ field: 'resource', message: parsed.error.issues[0]?.message ?? 'is invalid' }]);
}

const standalone = (owner: string): OwnerRef => ({ kind: 'owner', id: owner });

export class LockApi {
  constructor(
    private readonly locks: LockService,
    private readonly store: LockStorePort,
  ) {}

  /** POST /locks/{resource} */
  async acquire(resource: string, body: unknown): Promise<ApiAnswer> {
    const bad = checkResource(resource);
    if (bad) return bad;
    const input = parse(acquireBody, body);
    if (!input.ok) return input.answer;
    const { owner, mode, waitSeconds } = input.value;
    try {
      const grant = await this.locks.acquire({
        resource,
        owner: standalone(owner),
        mode,
        scope: API_LOCK_SCOPE,
        leaseMs: input.value.leaseSeconds * 1000,
        waitMs: Math.round(waitSeconds * 1000),
      });
      return { status: 200, body: { resource, owner, mode: grant.mode, token: grant.token, leaseUntil: new Date(grant.leaseUntilMs).toISOString() } };
    } catch (err) {
      if (!(err instanceof LockWaitTimeoutError)) throw err;
      const holders = err.blockers.map((b) => b.slice(b.indexOf('#') + 1));
      return { status: 409, body: { error: { code: 'LockHeld', message: err.message, holders } } };
    }
  }

  /** PUT /locks/{resource}: renew the lease. */
  async renew(resource: string, body: unknown): Promise<ApiAnswer> {
    const bad = checkResource(resource);
    if (bad) return bad;
    const input = parse(renewBody, body);
    if (!input.ok) return input.answer;
    try {
      const grant = await this.locks.renew(resource, standalone(input.value.owner), input.value.leaseSeconds * 1000);
      return { status: 200, body: { resource, owner: input.value.owner, mode: grant.mode, token: grant.token, leaseUntil: new Date(grant.leaseUntilMs).toISOString() } };
    } catch (err) {
      if (!(err instanceof LeaseLostError)) throw err;
      return { status: 409, body: { error: { code: 'LeaseLost', message: err.message } } };
    }
  }

  /** DELETE /locks/{resource}?owner=... (or the owner in a JSON body). */
  async release(resource: string, owner: string | undefined, body: unknown): Promise<ApiAnswer> {
    const bad = checkResource(resource);
    if (bad) return bad;
    const input = parse(releaseBody, owner === undefined ? body : { owner });
    if (!input.ok) return input.answer;
    const released = await this.locks.release(resource, standalone(input.value.owner), API_LOCK_SCOPE);
    if (!released) return { status: 404, body: { error: { code: 'NotHeld', message: `${input.value.owner} does not hold ${resource}` } } };
    return { status: 200, body: { resource, owner: input.value.owner, released: true } };
  }

  /** GET /locks/{resource} */
  async inspect(resource: string): Promise<ApiAnswer> {
    const bad = checkResource(resource);
    if (bad) return bad;
    const found = await this.locks.inspect(resource);
    return found ? { status: 200, body: found } : { status: 404, body: { error: { code: 'NotFound', message: `no lock ${resource}` } } };
  }

  /** GET /deadlocks?limit=&cursor= : resolved deadlocks, most recent first. */
  async deadlocks(limitParam: string | undefined, cursor: string | undefined): Promise<ApiAnswer> {
    const limit = limitParam === undefined ? 20 : Number(limitParam);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) return invalid([{ field: 'limit', message: 'must be a whole number from 1 to 100' }]);
    try {
      return { status: 200, body: await this.store.listDeadlocks(limit, cursor) };
    } catch (err) {
      if (err instanceof BadCursorError) return invalid([{ field: 'cursor', message: err.message }]);
      throw err;
    }
  }
}
