// What the lock service and the deadlock detector need from the transaction log: a transaction's
// status and age, and the one way anyone outside the state machine ends a transaction: the
// conditional decision write (TxLog.decideAbort), followed by waking its execution.
import { systemClock } from '../aws/system';
import type { Clock, TxLogPort, WorkflowPort } from '../core/ports';
import type { TxRecord } from '../core/transaction';

export type TxFacts = Pick<TxRecord, 'txId' | 'status' | 'createdAt' | 'taskToken' | 'taskPhase'>;

export interface AbortResult {
  /** True when this call wrote the decision; false when a decision existed already. */
  applied: boolean;
  record: TxFacts | undefined;
}

export interface TransactionPort {
  get(txId: string): Promise<TxFacts | undefined>;
  /** Decide ABORT if the transaction is still PREPARING, and wake its execution if it waits in Prepare. */
  abort(txId: string, reason: string): Promise<AbortResult>;
}

export class Transactions implements TransactionPort {
  constructor(
    private readonly log: Pick<TxLogPort, 'get' | 'decideAbort'>,
    /** Without it the execution wakes at the next vote (see Coordinator.onVote) or its prepare timeout. */
    private readonly workflow?: Pick<WorkflowPort, 'signal'>,
    private readonly now: Clock = systemClock,
  ) {}

  get(txId: string): Promise<TxFacts | undefined> {
    return this.log.get(txId);
  }

  async abort(txId: string, reason: string): Promise<AbortResult> {
    const { applied, record } = await this.log.decideAbort(txId, reason, new Date(this.now()).toISOString());
    // Also when the write did not apply: the writer that won may have crashed before it woke the
    // execution, and a second SendTaskSuccess for the same token is a harmless TaskDoesNotExist.
    if (record?.status === 'ABORTING' && record.taskPhase === 'PREPARE' && record.taskToken && this.workflow) {
      // The output the Prepare task would have had; Decide then fails its condition and
      // ReadDecision routes the execution to Abort.
      await this.workflow.signal(record.taskToken, { outcome: 'ABORT', status: 'ABORTING', reason: record.decisionReason ?? reason });
    }
    return { applied, record };
  }
}
