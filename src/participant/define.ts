// What a participant service writes: its name, the shape of its operation, and three handlers.
// The barrier (see src/core/barrier.ts) decides when each handler runs; the handlers only touch
// the service's own data, keyed by txId so that running one twice changes nothing.
import type { z } from 'zod';
import type { PrepareResult } from '../core/barrier';
import type { Grant, LockMode } from '../core/locks';
import { type Vote, clipReason, serviceName, vote as voteSchema } from '../core/messages';
import { LockWaitTimeoutError, TransactionAbortedError } from '../locks/service';

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

export interface ParticipantDefinition<Op> {
  service: string;
  /** Validates the operation; one that fails is voted NO with the schema error, and no handler runs. */
  operation?: z.ZodType<Op>;
  /**
   * Places the transaction's effect as a hold keyed by txId and votes. Must be idempotent per txId:
   * a redelivery after a crash runs it again. Vote NO may leave a partial hold: abort follows.
   */
  prepare(input: PrepareInput<Op>): Promise<{ vote: Vote; reason?: string }>;
  /** Turns the txId's hold into the final effect; a second call finds nothing to do. */
  commit(input: PhaseInput<Op>): Promise<void>;
  /**
   * Releases whatever is still held for txId and nothing else: it may run when nothing was held, more
   * than once, and after a finished commit (to release a hold that a late prepare re-created).
   */
  abort(input: PhaseInput<Op>): Promise<void>;
}

/** The untyped face the runner drives: the operation arrives as JSON from the queue. */
export interface Participant {
  readonly service: string;
  prepare(input: PrepareInput<unknown>): Promise<PrepareResult>;
  commit(input: PhaseInput<unknown>): Promise<void>;
  abort(input: PhaseInput<unknown>): Promise<void>;
}

export function defineParticipant<Op = unknown>(definition: ParticipantDefinition<Op>): Participant {
  const name = serviceName.safeParse(definition.service);
  if (!name.success) throw new Error(`participant service '${definition.service}' ${name.error.issues[0]?.message ?? 'is invalid'}`);
  const parse = (operation: unknown): { ok: true; value: Op } | { ok: false; reason: string } => {
    if (!definition.operation) return { ok: true, value: operation as Op };
    const result = definition.operation.safeParse(operation);
    if (result.success) return { ok: true, value: result.data };
    return { ok: false, reason: result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ') };
  };

  return {
    service: definition.service,
    async prepare({ txId, operation, deadlineAt, lock }) {
      const parsed = parse(operation);
      if (!parsed.ok) return { vote: 'NO', reason: clipReason(`invalid operation: ${parsed.reason}`) };
      let result: { vote: Vote; reason?: string };
      try {
        result = await definition.prepare({ txId, operation: parsed.value, deadlineAt, ...(lock ? { lock } : {}) });
      } catch (err) {
        // A lock that cannot be had is a NO, not a failure to retry: the abort that follows releases
        // whatever this prepare already locked, so a deadlock victim frees the others at once.
        if (err instanceof LockWaitTimeoutError || err instanceof TransactionAbortedError) return { vote: 'NO', reason: clipReason(err.message) };
        throw err;
      }
      // User code is JavaScript at runtime: a vote outside the protocol must not reach the barrier.
      const checked = voteSchema.safeParse(result?.vote);
      if (!checked.success) throw new Error(`${definition.service}.prepare returned vote ${JSON.stringify(result?.vote)}; expected YES, NO or READ_ONLY`);
      return { vote: checked.data, ...(result.reason === undefined ? {} : { reason: clipReason(result.reason) }) };
    },
    async commit({ txId, operation }) {
      const parsed = parse(operation);
      // Only a YES vote leads to COMMIT, and an invalid operation always votes NO.
      if (!parsed.ok) throw new Error(`${definition.service}: COMMIT for ${txId} carries an invalid operation: ${parsed.reason}`);
      await definition.commit({ txId, operation: parsed.value });
    },
    async abort({ txId, operation }) {
      const parsed = parse(operation);
      // An invalid operation was voted NO before any handler ran: there is nothing to release.
      if (!parsed.ok) return;
      await definition.abort({ txId, operation: parsed.value });
    },
  };
}
