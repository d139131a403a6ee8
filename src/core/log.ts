// The transaction log's port implemented once over the table of state changes: which transition
// each operation is, the status it acts from, and the write. An adapter (DynamoDB, in memory) only
// says how a conditional update, a conditional put and a consistent read are done, and serves the
// two index queries. Every operation is async, so a refused transition rejects rather than throws. This is Powertools' persistence-layer pattern: the rules here, the store below.
import { LOG_TRANSITIONS, type PutWrite, type TransitionName, type UpdateWrite, assertTransition, claimIdempotencyKeyWrite, idempotencyPk } from './log-transitions';
import type { IdempotencyRecord, ListPage, StalePage, TxLogPort, WriteResult } from './ports';
import { type AckEntry, type Outcome, PHASE_STATUS, type Phase, type PhaseTwoResult, type TxRecord, type TxStatus, type VoteEntry } from './transaction';

export abstract class TableTxLog implements TxLogPort {
  /** Apply `write` to item `pk` if its condition holds (asserting `name` around it); else answer the item as it is. */
  protected abstract update(pk: string, name: TransitionName, before: TxStatus | undefined, write: UpdateWrite): Promise<WriteResult>;
  /** Put `write.item` if its condition holds; false when it does not. */
  protected abstract put(write: PutWrite): Promise<boolean>;
  /** A strongly consistent read of any item of the table. */
  protected abstract read(pk: string): Promise<Record<string, unknown> | undefined>;
  abstract listStale(beforeIso: string, limit: number, startKey?: Record<string, unknown>): Promise<StalePage>;
  abstract list(limit: number, cursor?: string): Promise<ListPage>;

  async create(record: TxRecord): Promise<boolean> {
    assertTransition('create', null);
    return this.put(LOG_TRANSITIONS.create.write(record));
  }

  async get(txId: string): Promise<TxRecord | undefined> {
    return (await this.read(txId)) as TxRecord | undefined;
  }

  async recordVote(txId: string, participant: string, entry: VoteEntry): Promise<WriteResult> {
    return this.update(txId, 'recordVote', 'PREPARING', LOG_TRANSITIONS.recordVote.write(participant, entry));
  }

  async recordAck(txId: string, participant: string, entry: AckEntry): Promise<WriteResult> {
    return this.update(txId, 'recordAck', PHASE_STATUS[entry.phase], LOG_TRANSITIONS.recordAck.write(participant, entry));
  }

  async storeTaskToken(txId: string, phase: Phase, taskToken: string, at: string): Promise<WriteResult> {
    return this.update(txId, 'storeTaskToken', PHASE_STATUS[phase], LOG_TRANSITIONS.storeTaskToken.write(phase, taskToken, at));
  }

  async finalize(txId: string, result: PhaseTwoResult, at: string): Promise<WriteResult> {
    return this.update(txId, 'finalize', result.from, LOG_TRANSITIONS.finalize.write(result, at));
  }

  async markInDoubt(txId: string, phase: 'COMMIT' | 'ABORT', since: Record<string, string>): Promise<WriteResult> {
    return this.update(txId, 'markInDoubt', PHASE_STATUS[phase], LOG_TRANSITIONS.markInDoubt.write(phase, since));
  }

  async decideAbort(txId: string, reason: string, at: string): Promise<WriteResult> {
    return this.update(txId, 'decideAbort', 'PREPARING', LOG_TRANSITIONS.decideAbort.write(reason, at));
  }

  /**
   * The state machine's Decide step, for tests, tools and the simulation's state machine: production
   * decides in the state machine (cdk/workflow.ts), with the same write.
   */
  async decide(txId: string, prepare: { status: 'COMMITTING' | 'ABORTING'; outcome: Outcome; reason: string }, at: string): Promise<WriteResult> {
    return this.update(txId, 'decide', 'PREPARING', LOG_TRANSITIONS.decide.write({ ...prepare, at }));
  }

  /**
   * Claim the next recovery of a transaction whose execution `seen.executionName` is gone: only one
   * claimant per recovery number wins, so two sweepers never both start one. Fails if the record
   * finished, or someone else recovered it since it was read.
   */
  async claimRecovery(txId: string, seen: { executionName: string; recoveries: number }, next: { executionName: string; at: string }): Promise<WriteResult> {
    return this.update(txId, 'claimRecovery', undefined, LOG_TRANSITIONS.claimRecovery.write(txId, seen, next));
  }

  /** Claim an idempotency key for a transaction id; answers the existing claim if there is one. */
  async claimIdempotencyKey(key: string, txId: string, requestHash: string, at: string): Promise<IdempotencyRecord> {
    const item: IdempotencyRecord = { pk: idempotencyPk(key), txId, requestHash, createdAt: at };
    if (await this.put(claimIdempotencyKeyWrite(item))) return item;
    const existing = await this.read(item.pk);
    if (!existing) throw new Error(`idempotency key ${key} vanished after a failed claim`);
    return existing as unknown as IdempotencyRecord;
  }
}
