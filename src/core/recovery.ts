// Recovery rules, pure: what the sweeper does with an open transaction whose execution may be gone,
// and what a participant in doubt concludes from what the log says. No I/O and no clock: callers
// pass `nowMs` and what they read. The sweeper (src/recovery.ts) and the simulation both run these.
import { type ExecutionInput, type OpenStatus, type Phase, STATUS_PHASE, type TxRecord, type TxStatus, executionInput } from './transaction';

/** What DescribeExecution says, with MISSING for ExecutionDoesNotExist (a local stack restarted). */
export type ExecutionState = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED' | 'MISSING';


/** Execution names allow 80 characters; a txId has at most 64, so the suffix always fits. */
export function recoveryExecutionName(txId: string, n: number): string {
  if (!Number.isInteger(n) || n < 1) throw new Error(`recovery number must be a positive integer, got ${n}`);
  return `${txId}-r${n}`;
}

export type RecoveryRecord = Pick<TxRecord, 'txId' | 'status' | 'prepareDeadlineAt' | 'timeouts' | 'updatedAt' | 'executionName' | 'recoveries'> & {
  openPk?: string;
};

export type RecoveryAction =
  | { kind: 'none'; why: string }
  /** Decide ABORT with the conditional decision write first, then resume from the decision. */
  | { kind: 'abort'; reason: string }
  | { kind: 'resume'; from: Phase };

/** A record that has not moved for `staleMs`: a candidate, not yet a verdict (its execution may be alive). */
export function isStale(record: Pick<TxRecord, 'updatedAt'>, nowMs: number, staleMs: number): boolean {
  return Date.parse(record.updatedAt) <= nowMs - staleMs;
}

/**
 * What to do with an open transaction, given the state of the execution the record names. A live
 * execution is left alone however quiet it is: it has its own timeouts. A dead one is replaced by a
 * recovery execution starting in the recorded phase; PREPARING past its deadline is aborted first,
 * because nobody waits for its votes any more (presumed abort).
 */
export function recoveryAction(record: RecoveryRecord, execution: ExecutionState, nowMs: number): RecoveryAction {
  if (record.openPk === undefined || isFinal(record.status)) return { kind: 'none', why: `already ${record.status}` };
  if (execution === 'RUNNING') return { kind: 'none', why: 'its execution is running' };
  if (record.status === 'PREPARING' && nowMs >= record.prepareDeadlineAt) {
    return { kind: 'abort', reason: `recovery: execution ${execution.toLowerCase()} and the prepare deadline passed` };
  }
  return { kind: 'resume', from: STATUS_PHASE[record.status as OpenStatus] };
}

/**
 * The recovery execution's input. A resumed Prepare waits only for what is left of the original
 * prepare deadline (at least one second), so recovery never extends the time participants hold.
 */
export function resumeInput(record: Pick<TxRecord, 'txId' | 'timeouts' | 'prepareDeadlineAt'>, from: Phase, nowMs: number): ExecutionInput {
  const prepareSeconds =
    from === 'PREPARE' ? Math.max(1, Math.min(record.timeouts.prepareSeconds, Math.ceil((record.prepareDeadlineAt - nowMs) / 1000))) : record.timeouts.prepareSeconds;
  return { ...executionInput(record), timeouts: { prepareSeconds, commitSeconds: record.timeouts.commitSeconds }, resumeFrom: from };
}

export function isFinal(status: TxStatus): boolean {
  return status === 'COMMITTED' || status === 'ABORTED';
}

/** What a participant in doubt learns by asking: a decision, or that there is none yet. */
export type DecisionAnswer = 'COMMIT' | 'ABORT' | 'PENDING';

/**
 * Presumed abort: a transaction with no log record never committed and never will (the record is
 * written before any PREPARE is sent, and a committed record is kept until every YES voter
 * acknowledged), so a missing record answers ABORT. PREPARING has no decision yet.
 */
export function decisionOf(record: Pick<TxRecord, 'status'> | undefined): DecisionAnswer {
  if (record === undefined) return 'ABORT';
  switch (record.status) {
    case 'COMMITTING':
    case 'COMMITTED':
      return 'COMMIT';
    case 'ABORTING':
    case 'ABORTED':
      return 'ABORT';
    case 'PREPARING':
      return 'PENDING';
  }
}

/**
 * Capped exponential backoff with full jitter: a uniform draw in [0, min(cap, base * 2^attempt)).
 * `random` is a draw in [0, 1), injected so a seed replays the same waits.
 */
export function backoffMs(attempt: number, baseMs: number, capMs: number, random: number): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random * ceiling);
}
