// Supervision: one Standard execution of the state machine (cdk/workflow.ts) looks after a group of
// transactions: those created in one time bucket with one shard of ids, or those whose phase two
// is parked with one participant. Each run of its Supervise step is `superviseRun`: read the group's
// open members through the sparse `open` index, do what each needs (commit what has every YES,
// abort what is overdue, re-send phase two on a backoff that never gives up, mark in doubt, park),
// and say when to look again. The state machine waits until then (an absolute time), and ends when
// the group is empty and closed. `ensureSupervisor` is how anyone (a start, the sweeper, parking)
// makes sure a group has a running supervisor. The rules are src/core/recovery.ts.
import { z } from 'zod';
import { systemClock } from './aws/system';
import { executionArn } from './aws/workflow';
import type { Coordinator } from './coordinator';
import { type GroupRecord, supervisorName } from './core/log-transitions';
import type { TxLogPort, WorkflowPort } from './core/ports';
import { keepAliveDue, memberAction, RESEND_CAP_MS } from './core/recovery';
import { groupInfo, parkingGroup, type TxRecord } from './core/transaction';
import { METRIC, noMetrics, type MetricsPort } from './metrics';

/** A bucket's group stays supervised this long after its bucket closed (late starts, clock skew). */
export const GROUP_GRACE_MS = 30_000;
/** Runs per execution before it continues as a new one: far below the 25,000-event history (a run is 3 state transitions, about 9 events). */
export const RUNS_PER_EXECUTION = 1_000;
/** Members read per run; more wait for the next run, which comes at once. */
export const MEMBERS_PER_RUN = 2_000;
/** The soonest and latest a supervisor looks again. */
const MIN_WAKE_MS = 1_000;
const MAX_WAKE_MS = RESEND_CAP_MS;

/** The execution's state cannot be read: no retry fixes it (the state machine ends the execution: `Malformed`). */
export class SupervisorStateError extends Error {
  override readonly name = 'SupervisorStateError';
}

export interface SupervisorDeps {
  log: TxLogPort;
  workflow: WorkflowPort;
  now?: () => number;
}

/** The execution's state between runs (its input, and each run's output). */
export const supervisorState = z.object({
  group: z.string().min(1).max(64),
  gen: z.number().int().nonnegative().default(0),
  /** Epoch ms of the previous run: phase two is re-sent when a point of its schedule fell since. */
  lastRunAt: z.number().int().optional(),
  runs: z.number().int().nonnegative().default(0),
  /** A parking group's probe: the transaction whose acknowledgement says its participant is back. */
  probe: z.string().optional(),
});
export type SupervisorState = z.infer<typeof supervisorState>;

export interface SupervisorRun extends SupervisorState {
  done: boolean;
  /** ISO time the state machine's Wait state sleeps until. */
  wakeAt: string;
  /** What this run did, for logs and tests. */
  report: { members: number; committed: number; aborted: number; finished: number; resent: number; inDoubt: number; parked: number };
}

/** A Wait on a time in the past ends at once: the first run of a supervisor started with it comes at once. */
const AT_ONCE = new Date(0).toISOString();

/**
 * When a new group's supervisor first looks at its group (the state machine starts with Sleep): when
 * something of the transaction that starts it can first be due (its prepare deadline, or its first
 * phase-two re-send: a decision comes after its creation, the re-send a commit timeout after that),
 * but no later than the bucket's close, when every member but a late one has been created. So no run
 * is made at the supervisor's start, when nothing can be due yet. Every starter whose timeouts reach
 * past the close (the defaults' case) passes the same time, so their starts stay one idempotent
 * input. Without a starter (the sweeper), for a parking group and for a bucket already closed: at once.
 */
export function firstLook(group: string, starter?: Pick<TxRecord, 'prepareDeadlineAt' | 'createdAt' | 'timeouts'>): string {
  const info = groupInfo(group);
  if (starter === undefined || info.kind !== 'bucket') return AT_ONCE;
  const firstDue = Math.min(starter.prepareDeadlineAt, Date.parse(starter.createdAt) + starter.timeouts.commitSeconds * 1000);
  return new Date(Math.min(firstDue, info.closesAt)).toISOString();
}

/**
 * Make sure `group` has a running supervisor. Generation 0 is the execution named after the group,
 * started with the same input by every caller with the same first look (`firstLook`), so a
 * repeated or duplicated start is a no-op while it runs. If that name is taken by a closed execution
 * (or by a running one started with another first look), the group's record names the current
 * generation; a dead one is replaced by claiming the next generation (one claimant wins) and
 * starting it, to run at once. Answers the execution that supervises the group now.
 */
export async function ensureSupervisor(
  deps: SupervisorDeps,
  stateMachineArn: string,
  group: string,
  starter?: Pick<TxRecord, 'prepareDeadlineAt' | 'createdAt' | 'timeouts'>,
): Promise<string> {
  const started = await deps.workflow.start(stateMachineArn, group, { group, gen: 0, wakeAt: firstLook(group, starter) });
  if (started === 'started') return group;
  const record = await deps.log.readGroup(group);
  const current: Pick<GroupRecord, 'gen' | 'execution'> = record ?? { gen: 0, execution: supervisorName(group, 0) };
  const state = await deps.workflow.describe(executionArn(stateMachineArn, current.execution));
  if (state === 'RUNNING') return current.execution;
  if (state === 'MISSING' && current.gen > 0) {
    // Claimed but never started (a crash between claim and start): start it now.
    await deps.workflow.start(stateMachineArn, current.execution, { group, gen: current.gen, wakeAt: AT_ONCE });
    return current.execution;
  }
  const now = deps.now ?? systemClock;
  const claimed = await deps.log.claimGroup(group, current.gen, new Date(now()).toISOString());
  if (!claimed) {
    const winner = await deps.log.readGroup(group);
    return winner?.execution ?? current.execution;
  }
  await deps.workflow.start(stateMachineArn, claimed.execution, { group, gen: claimed.gen, wakeAt: AT_ONCE });
  return claimed.execution;
}

/** One run of a group's supervisor. */
export async function superviseRun(
  coordinator: Coordinator,
  deps: SupervisorDeps & { stateMachineArn: string; metrics?: MetricsPort },
  input: SupervisorState,
): Promise<SupervisorRun> {
  const now = deps.now ?? systemClock;
  const metrics = deps.metrics ?? noMetrics;
  const nowMs = now();
  const info = groupInfo(input.group);
  const parking = info.kind === 'park';
  const report = { members: 0, committed: 0, aborted: 0, finished: 0, resent: 0, inDoubt: 0, parked: 0 };

  const ids: string[] = [];
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await deps.log.openMembers(input.group, Math.min(500, MEMBERS_PER_RUN - ids.length), startKey);
    ids.push(...page.items.map((i) => i.txId));
    startKey = page.nextKey;
  } while (startKey && ids.length < MEMBERS_PER_RUN);
  const more = startKey !== undefined;
  const records = await deps.log.getMany(ids);
  report.members = records.length;

  let open = 0;
  let wake = nowMs + MAX_WAKE_MS;
  const parkedWith = new Set<string>();
  // A parking group probes with one transaction until its participant acknowledges, then re-sends in bulk.
  const probeRecord = parking ? records.find((r) => r.txId === input.probe) : undefined;
  const back = parking && input.probe !== undefined && (probeRecord === undefined || probeRecord.acks[info.service] !== undefined);
  let probe = back ? undefined : input.probe;
  /** Re-sends of phase two, made together after the pass: each participant's go ten to a request. */
  const resends: { record: TxRecord; to: readonly string[]; attempt: number }[] = [];

  for (const record of records) {
    const action = memberAction(record, nowMs, input.lastRunAt, parking);
    // A transaction open for a long time (a participant in doubt for weeks): its operations item and
    // idempotency key are kept for longer, so they still outlive the record when it finishes.
    if (action.kind !== 'none' && keepAliveDue(Date.parse(record.createdAt), input.lastRunAt, nowMs)) await coordinator.keepAlive(record);
    let after: TxRecord = record;
    switch (action.kind) {
      case 'none':
        continue;
      case 'wait':
        open++;
        wake = Math.min(wake, action.until);
        continue;
      case 'commit':
      case 'abort':
        after = await coordinator.drive(record, false);
        if (after.decision === 'COMMIT') report.committed++;
        else if (after.decision === 'ABORT') report.aborted++;
        break;
      case 'finish':
        await coordinator.finish(record);
        report.finished++;
        continue;
      case 'phase-two': {
        if (action.park) {
          const parked = await deps.log.park(record.txId, record.decision === 'COMMIT' ? 'COMMIT' : 'ABORT', action.park);
          if (parked.applied) {
            report.parked++;
            parkedWith.add(action.park);
            continue;
          }
        }
        if (action.markInDoubt) {
          const at = new Date(nowMs).toISOString();
          const marked = await deps.log.markInDoubt(record.txId, record.decision === 'COMMIT' ? 'COMMIT' : 'ABORT', at);
          if (marked.applied) {
            report.inDoubt += action.to.length;
            metrics.count(METRIC.ParticipantsInDoubt, action.to.length);
            await coordinator.deadLetterInDoubt(marked.record ?? record, action.to, action.attempt);
          }
        }
        let send = action.resend;
        if (parking) {
          // Probe with one transaction; everyone else waits until the participant answers it.
          if (probe === undefined && action.to.includes(info.service)) probe = record.txId;
          send = back || (send && record.txId === probe);
        }
        if (send) {
          resends.push({ record, to: action.to, attempt: action.attempt });
          report.resent++;
        }
        open++;
        wake = Math.min(wake, action.next);
        continue;
      }
    }
    if (after.status === 'COMMITTING' || after.status === 'ABORTING') {
      open++;
      wake = Math.min(wake, nowMs + after.timeouts.commitSeconds * 1000);
    } else if (after.status === 'PREPARING') {
      // Not decided after all (another writer moved it, or a clock says not yet): look again soon.
      open++;
      wake = Math.min(wake, Math.max(after.prepareDeadlineAt, nowMs + MIN_WAKE_MS));
    }
  }

  await coordinator.phaseTwoAll(resends);
  for (const service of parkedWith) await ensureSupervisor(deps, deps.stateMachineArn, parkingGroup(service));

  const closed = info.kind === 'park' || nowMs >= info.closesAt + GROUP_GRACE_MS;
  if (info.kind === 'bucket' && !closed) wake = Math.min(wake, info.closesAt + GROUP_GRACE_MS);
  if (more) wake = nowMs;
  const done = open === 0 && !more && closed;
  const runs = input.runs + 1;
  const base = { group: input.group, gen: input.gen, lastRunAt: nowMs, runs, ...(probe ? { probe } : {}), report };
  if (!done && runs >= RUNS_PER_EXECUTION) {
    // Continue as a new execution, well before the history limit: claim the next generation and start it.
    const claimed = await deps.log.claimGroup(input.group, input.gen, new Date(nowMs).toISOString());
    if (claimed) await deps.workflow.start(deps.stateMachineArn, claimed.execution, { group: input.group, gen: claimed.gen, wakeAt: AT_ONCE });
    return { ...base, done: true, wakeAt: new Date(nowMs).toISOString() };
  }
  const wakeAt = Math.max(nowMs + MIN_WAKE_MS, Math.min(wake, nowMs + MAX_WAKE_MS));
  return { ...base, done, wakeAt: new Date(wakeAt).toISOString() };
}
