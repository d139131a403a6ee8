// Supervision and recovery rules, pure: what a group's supervisor does with each open member, when
// phase two is re-sent, and what a participant in doubt concludes from what the log says. No I/O
// and no clock: callers pass `nowMs` and what they read. The supervisor (src/supervisor.ts) and the
// simulation both run these.
import { IN_DOUBT_AFTER_COMMIT_TIMEOUTS, OPS_EXTRA_DAYS, type TxRecord, type TxStatus, awaitingAck } from './transaction';

/** What DescribeExecution says, with MISSING for ExecutionDoesNotExist (a local stack restarted). */
export type ExecutionState = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED' | 'MISSING';


/** Longest wait between two phase-two sends to a participant that does not acknowledge. */
export const RESEND_CAP_MS = 60_000;
/** On a supervisor's first run, phase two older than this is re-sent at once. */
export const FIRST_RUN_RESEND_AFTER_MS = 5_000;
/** A transaction whose phase two has waited this long on a participant is parked with that participant's supervisor. */
export const PARK_AFTER_MS = 10 * 60_000;

/**
 * When phase two is (re)sent to whoever has not acknowledged: at the decision, then at
 * decided + c, + 3c, + 7c, ... (c: the commit timeout), the step capped at RESEND_CAP_MS. Never
 * giving up. The schedule is a function of the record alone, so a supervisor needs no state per
 * transaction: it sends when a point of the schedule fell in (lastRunAt, now].
 */
export function resendPoints(decidedMs: number, commitMs: number, fromMs: number, toMs: number): { due: boolean; next: number; sends: number } {
  let step = Math.max(1, commitMs);
  let point = decidedMs + step;
  let due = false;
  let sends = 1; // the decider's own send
  while (point <= toMs) {
    if (point > fromMs) due = true;
    sends++;
    step = Math.min(RESEND_CAP_MS, step * 2);
    point += step;
  }
  return { due, next: point, sends };
}

/** What supervision does with one open transaction of its group now. */
export type MemberAction =
  /** Every YES is in but the decision was never written (its decider crashed): COMMIT. */
  | { kind: 'commit' }
  /** Still undecided at its deadline by the supervisor's clock: ABORT (the write re-checks). */
  | { kind: 'abort'; reason: string }
  /** Decided and nobody owes an acknowledgement: finish it. */
  | { kind: 'finish' }
  /**
   * Decided with acknowledgements missing: re-send phase two to `to` when `resend`; mark them in doubt
   * when `markInDoubt`; hand the transaction to `park`'s supervisor when set. Look again at `next`.
   */
  | { kind: 'phase-two'; to: string[]; resend: boolean; attempt: number; markInDoubt: boolean; park?: string; next: number }
  /** Undecided before its deadline: look again at the deadline. */
  | { kind: 'wait'; until: number }
  | { kind: 'none'; why: string };

/**
 * The rule for one member, pure. `lastRunAt`: when this supervisor last looked (undefined at its
 * first run: a supervisor replacing a dead one re-sends what is due at once). `parking`: whether
 * this group already is a parking group (its members are never parked again).
 */
export function memberAction(
  record: Pick<TxRecord, 'status' | 'services' | 'votes' | 'acks' | 'ok' | 'req' | 'decision' | 'decidedAt' | 'prepareDeadlineAt' | 'timeouts' | 'inDoubtSince' | 'parkedWith' | 'releases'>,
  nowMs: number,
  lastRunAt: number | undefined,
  parking: boolean,
): MemberAction {
  if (isFinal(record.status)) return { kind: 'none', why: `already ${record.status}` };
  if (record.status === 'PREPARING') {
    if (record.ok === record.req) return { kind: 'commit' };
    if (nowMs >= record.prepareDeadlineAt) return { kind: 'abort', reason: 'prepare deadline passed' };
    return { kind: 'wait', until: record.prepareDeadlineAt };
  }
  const to = awaitingAck(record);
  if (to.length === 0) return { kind: 'finish' };
  const decidedMs = Date.parse(record.decidedAt ?? '') || nowMs;
  const commitMs = record.timeouts.commitSeconds * 1000;
  const scheduled = resendPoints(decidedMs, commitMs, lastRunAt ?? Number.NEGATIVE_INFINITY, nowMs);
  // A supervisor's first run (a replacement after a crash, say) re-sends what has waited more than
  // FIRST_RUN_RESEND_AFTER_MS at once: a message lost with a restarted stack is not left for a commit timeout.
  const due = scheduled.due || (lastRunAt === undefined && nowMs - decidedMs >= FIRST_RUN_RESEND_AFTER_MS);
  const { next, sends } = scheduled;
  const waited = nowMs - decidedMs;
  const markInDoubt = record.inDoubtSince === undefined && waited >= IN_DOUBT_AFTER_COMMIT_TIMEOUTS * commitMs;
  const park = !parking && record.parkedWith === undefined && waited >= PARK_AFTER_MS ? to[0] : undefined;
  return { kind: 'phase-two', to, resend: due, attempt: sends, markInDoubt, ...(park ? { park } : {}), next };
}

/** How often the items beside an open record (operations, idempotency key) are kept for longer. */
export const KEEP_ALIVE_EVERY_MS = OPS_EXTRA_DAYS * 86_400_000;

/**
 * Whether supervision keeps an open transaction's operations item and idempotency key for longer
 * now: at created + k * KEEP_ALIVE_EVERY_MS (k >= 1), once per point, like the re-send schedule (a
 * point in (lastRunAt, now]; at a supervisor's first run, any point passed). Written at creation
 * with retention + OPS_EXTRA_DAYS and pushed to now + that at each point, they expire at least
 * `retention` after any moment before the next point: so after the record, whenever it finishes.
 */
export function keepAliveDue(createdMs: number, lastRunAt: number | undefined, nowMs: number): boolean {
  const passed = Math.floor((nowMs - createdMs) / KEEP_ALIVE_EVERY_MS);
  if (passed < 1) return false;
  if (lastRunAt === undefined) return true;
  return Math.floor((lastRunAt - createdMs) / KEEP_ALIVE_EVERY_MS) < passed;
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
