// What a participant service writes: its name, the shape of its operation, and three handlers.
// The barrier (see src/core/barrier.ts) decides when each handler runs; the handlers build their
// effect on the service's own data as writes, which the barrier applies with its own transition.
import type { z } from 'zod';
import type { PrepareResult } from '../core/barrier';
import type { Grant, LockMode } from '../core/locks';
import { clipReason, serviceName, vote as voteSchema } from '../core/messages';
import { LockWaitTimeoutError, TransactionAbortedError } from '../locks/service';
import type { TransactWrite } from './barrier-store';

/** A vote reason travels in the VOTE message, which caps it at 1000 characters. */

export interface PrepareInput<Op> {
  txId: string;
  operation: Op;
  /** Epoch ms after which the coordinator no longer waits for this vote. */
  deadlineAt: number;
  /**
   * Lock `resource` for this transaction (default mode X), waiting at most until `deadlineAt`.
   * Re-entrant; S -> X upgrades. The grant's fencing `token` goes with every write the lock guards,
   * and the data refuses a write whose token is older than the last it saw. Released by the SDK
   * after commit or abort. If the wait ends (timeout, or the transaction was aborted, say as a
   * deadlock victim) the SDK votes NO. Present only when the runner has a lock service (`locks`).
   */
  lock?: (resource: string, mode?: LockMode) => Promise<Grant>;
}

export interface PhaseInput<Op> {
  txId: string;
  operation: Op;
}

/**
 * What prepare answers. YES carries the effect: the writes (hold stock, create a record, ...) the
 * SDK applies in one atomic write together with the barrier's PREPARED, conditional on this run
 * still owning the barrier. NO and READ_ONLY write nothing.
 */
export type PrepareAnswer<W> = { vote: 'YES'; writes?: W[]; reason?: string } | { vote: 'NO'; reason?: string } | { vote: 'READ_ONLY'; reason?: string };

/**
 * A participant service. Its handlers never write: they read what they need and answer the writes
 * of their effect, which the SDK applies all or nothing with the barrier transition that records
 * it (PREPARED, COMMITTED, ABORTED). So an effect lands exactly when its barrier state is written,
 * and no paused, duplicated or late run can apply one outside its state. On DynamoDB a write is a
 * TransactWriteItems action (`{ Put }`, `{ Update }`, `{ Delete }`, `{ ConditionCheck }`, in the
 * lib-dynamodb shape) on an item in the same account and region; see docs/participants.md.
 */
export interface ParticipantDefinition<Op, W = TransactWrite> {
  service: string;
  /** Validates the operation; one that fails is voted NO with the schema error, and no handler runs. */
  operation?: z.ZodType<Op>;
  /**
   * Decides the vote and, for YES, builds the hold keyed by txId. Its writes should carry the
   * conditions their reads relied on (enough stock, no such record yet): if one fails when the
   * SDK writes, prepare runs again on fresh data (a few times, then the vote is NO).
   */
  prepare(input: PrepareInput<Op>): Promise<PrepareAnswer<W>>;
  /** Builds the writes that turn the txId's hold into the final effect. Called only on a PREPARED(YES) barrier. */
  commit(input: PhaseInput<Op>): Promise<W[]>;
  /** Builds the writes that release the txId's hold. Called only on a PREPARED(YES) barrier, never on a committed one. */
  abort(input: PhaseInput<Op>): Promise<W[]>;
}

/** The untyped face the runner drives: the operation arrives as JSON from the queue. */
export interface Participant<W = TransactWrite> {
  readonly service: string;
  prepare(input: PrepareInput<unknown>): Promise<PrepareResult & { writes: W[] }>;
  commit(input: PhaseInput<unknown>): Promise<W[]>;
  abort(input: PhaseInput<unknown>): Promise<W[]>;
}

export function defineParticipant<Op = unknown, W = TransactWrite>(definition: ParticipantDefinition<Op, W>): Participant<W> {
  const name = serviceName.safeParse(definition.service);
  if (!name.success) throw new Error(`participant service '${definition.service}' ${name.error.issues[0]?.message ?? 'is invalid'}`);
  const parse = (operation: unknown): { ok: true; value: Op } | { ok: false; reason: string } => {
    if (!definition.operation) return { ok: true, value: operation as Op };
    const result = definition.operation.safeParse(operation);
    if (result.success) return { ok: true, value: result.data };
    return { ok: false, reason: result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') };
  };
  const writesOf = (handler: string, writes: unknown): W[] => {
    if (writes === undefined) return [];
    if (!Array.isArray(writes)) throw new Error(`${definition.service}.${handler} answered ${typeof writes} writes; expected an array`);
    return writes as W[];
  };

  return {
    service: definition.service,
    async prepare({ txId, operation, deadlineAt, lock }) {
      const parsed = parse(operation);
      if (!parsed.ok) return { vote: 'NO', reason: clipReason(`invalid operation: ${parsed.reason}`), writes: [] };
      let result: PrepareAnswer<W>;
      try {
        result = await definition.prepare({ txId, operation: parsed.value, deadlineAt, ...(lock ? { lock } : {}) });
      } catch (err) {
        // A lock that cannot be had is a NO, not a failure to retry: the SDK then releases whatever
        // this prepare already locked, so a deadlock victim frees the others at once.
        if (err instanceof LockWaitTimeoutError || err instanceof TransactionAbortedError) return { vote: 'NO', reason: clipReason(err.message), writes: [] };
        throw err;
      }
      // User code is JavaScript at runtime: a vote outside the protocol must not reach the barrier.
      const checked = voteSchema.safeParse(result?.vote);
      if (!checked.success) throw new Error(`${definition.service}.prepare returned vote ${JSON.stringify(result?.vote)}; expected YES, NO or READ_ONLY`);
      const writes = writesOf('prepare', (result as { writes?: unknown }).writes);
      if (checked.data !== 'YES' && writes.length > 0) throw new Error(`${definition.service}.prepare voted ${checked.data} with writes; only a YES carries an effect`);
      return { vote: checked.data, ...(result.reason === undefined ? {} : { reason: clipReason(result.reason) }), writes };
    },
    async commit({ txId, operation }) {
      const parsed = parse(operation);
      // Only a YES vote leads to COMMIT, and an invalid operation always votes NO.
      if (!parsed.ok) throw new Error(`${definition.service}: COMMIT for ${txId} carries an invalid operation: ${parsed.reason}`);
      return writesOf('commit', await definition.commit({ txId, operation: parsed.value }));
    },
    async abort({ txId, operation }) {
      const parsed = parse(operation);
      // An invalid operation was voted NO before any handler ran: there is nothing to release.
      if (!parsed.ok) return [];
      return writesOf('abort', await definition.abort({ txId, operation: parsed.value }));
    },
  };
}
