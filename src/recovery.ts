// The recovery sweeper: finds open transactions whose execution is gone and resumes each one from
// its recorded phase in a new execution `<txId>-r<n>`. The rules are src/core/recovery.ts; this
// module sequences the reads, the conditional writes and the starts, with bounded work per run.
// Two sweeps at once are safe: a recovery starts only after the conditional claim of its number.
import { z } from 'zod';
import { isStale, recoveryAction, recoveryExecutionName, resumeInput } from './core/recovery';
import { STATUS_PHASE, type TxRecord } from './core/transaction';
import type { TxLogPort } from './core/ports';
import { systemClock } from './aws/system';
import { executionArn } from './aws/workflow';
import type { WorkflowPort } from './core/ports';

export interface SweepOptions {
  stateMachineArn: string;
  /** A record that has not moved for this long is looked at (its execution may still be alive). */
  staleMs: number;
  /** At most this many transactions are examined per run (one DescribeExecution each). */
  maxPerRun?: number;
  /** At most this many index entries are read per run. */
  maxScanned?: number;
  /** Transactions examined at once. */
  concurrency?: number;
  /** Stop taking new work when less than this is left (a Lambda's remaining time). */
  remainingMs?: () => number;
}

export const SWEEP_DEFAULTS = { maxPerRun: 50, maxScanned: 1000, concurrency: 8, reserveMs: 3000 } as const;

export interface SweepDeps {
  log: TxLogPort;
  workflow: WorkflowPort;
  now?: () => number;
}

export type SweepOutcome =
  | { txId: string; kind: 'skipped'; why: string }
  | { txId: string; kind: 'resumed'; executionName: string; from: string; abortedFirst: boolean }
  | { txId: string; kind: 'lost-claim' }
  | { txId: string; kind: 'failed'; error: string };

export interface SweepReport {
  scanned: number;
  examined: number;
  outcomes: SweepOutcome[];
}

export async function sweep(deps: SweepDeps, options: SweepOptions): Promise<SweepReport> {
  const now = deps.now ?? systemClock;
  const maxPerRun = options.maxPerRun ?? SWEEP_DEFAULTS.maxPerRun;
  const maxScanned = options.maxScanned ?? SWEEP_DEFAULTS.maxScanned;
  const concurrency = options.concurrency ?? SWEEP_DEFAULTS.concurrency;
  const remainingMs = options.remainingMs ?? (() => Number.POSITIVE_INFINITY);
  const nowMs = now();
  const before = new Date(nowMs - options.staleMs).toISOString();

  // Oldest first: the longest-stuck transactions are recovered first when there are more than a run takes.
  const candidates: string[] = [];
  let scanned = 0;
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await deps.log.listStale(before, Math.min(100, maxScanned - scanned), startKey);
    scanned += page.items.length;
    for (const item of page.items) {
      if (candidates.length >= maxPerRun) break;
      candidates.push(item.txId);
    }
    startKey = page.nextKey;
  } while (startKey && scanned < maxScanned && candidates.length < maxPerRun);

  const outcomes: SweepOutcome[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < candidates.length && remainingMs() > SWEEP_DEFAULTS.reserveMs) {
      const txId = candidates[next++]!;
      try {
        outcomes.push(await recoverOne(deps, options, txId, now));
      } catch (err) {
        outcomes.push({ txId, kind: 'failed', error: `${(err as Error).name}: ${(err as Error).message}` });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, candidates.length) }, worker));
  return { scanned, examined: outcomes.length, outcomes };
}

/** One transaction: re-read it, ask after its execution, and resume it if that is gone. */
export async function recoverOne(deps: SweepDeps, options: Pick<SweepOptions, 'stateMachineArn' | 'staleMs'>, txId: string, now: () => number = systemClock): Promise<SweepOutcome> {
  const record = await deps.log.get(txId);
  if (!record || record.openPk === undefined) return { txId, kind: 'skipped', why: 'finished' };
  if (!isStale(record, now(), options.staleMs)) return { txId, kind: 'skipped', why: 'moved since the index was read' };
  const seen = { executionName: record.executionName ?? record.txId, recoveries: record.recoveries ?? 0 };
  const execution = await deps.workflow.describe(executionArn(options.stateMachineArn, seen.executionName));
  const action = recoveryAction(record, execution, now());
  if (action.kind === 'none') return { txId, kind: 'skipped', why: action.why };

  let abortedFirst = false;
  if (action.kind === 'abort') {
    // The same conditional write as the state machine's Decide: if a decision won the race, it stands.
    const decided = await deps.log.decideAbort(txId, action.reason, new Date(now()).toISOString());
    abortedFirst = decided.applied;
  }

  const executionName = recoveryExecutionName(txId, seen.recoveries + 1);
  const claim = await deps.log.claimRecovery(txId, seen, { executionName, at: new Date(now()).toISOString() });
  if (!claim.applied || !claim.record) return { txId, kind: 'lost-claim' };
  // The phase is read from the claimed record, so a decision made since the first read is followed.
  const from = phaseOf(claim.record);
  // If this start is lost (a crash right here), the record names an execution that does not exist:
  // the next sweep after `staleMs` finds it MISSING and claims the next number.
  await deps.workflow.start(options.stateMachineArn, executionName, resumeInput(claim.record, from, now()));
  return { txId, kind: 'resumed', executionName, from, abortedFirst };
}

/** The claim applied, so the record is open: its status names a phase. */
function phaseOf(record: TxRecord): 'PREPARE' | 'COMMIT' | 'ABORT' {
  if (record.status === 'COMMITTED' || record.status === 'ABORTED') throw new Error(`a claimed recovery of ${record.txId} found it ${record.status}`);
  return STATUS_PHASE[record.status];
}

const sweeperEnv = z.object({
  STATE_MACHINE_ARN: z.string().min(1),
  RECOVERY_STALE_SECONDS: z.coerce.number().int().min(1).max(86_400).default(30),
});

/** The sweeper's settings from its Lambda environment; a bad deployment fails loudly on the first run. */
export function readSweeperConfig(env: NodeJS.ProcessEnv = process.env): Pick<SweepOptions, 'stateMachineArn' | 'staleMs'> {
  const parsed = sweeperEnv.safeParse(env);
  if (!parsed.success) {
    throw new Error(`sweeper environment is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return { stateMachineArn: parsed.data.STATE_MACHINE_ARN, staleMs: parsed.data.RECOVERY_STALE_SECONDS * 1000 };
}
