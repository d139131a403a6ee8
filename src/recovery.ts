// The recovery sweeper (scheduled): checks groups, not transactions. Every group with open members
// must have a running supervisor (src/supervisor.ts); one whose supervisor is gone (failed, stopped,
// lost with a restarted local stack, or never started because its start failed) gets a new one.
// The work per run is bounded by the number of open transactions (a scan of the sparse `open`
// index) and the number of groups (one DescribeExecution or StartExecution each).
import { z } from 'zod';
import type { TxLogPort, WorkflowPort } from './core/ports';
import { systemClock } from './aws/system';
import { ensureSupervisor } from './supervisor';

export interface SweepOptions {
  stateMachineArn: string;
  /** At most this many index entries are read per run. */
  maxScanned?: number;
  /** Groups checked at once. */
  concurrency?: number;
  /** Stop taking new work when less than this is left (a Lambda's remaining time). */
  remainingMs?: () => number;
}

export const SWEEP_DEFAULTS = { maxScanned: 100_000, concurrency: 8, reserveMs: 3000 } as const;

export interface SweepDeps {
  log: TxLogPort;
  workflow: WorkflowPort;
  now?: () => number;
}

export type SweepOutcome = { group: string; open: number; kind: 'supervised'; execution: string } | { group: string; open: number; kind: 'failed'; error: string };

export interface SweepReport {
  /** Open transactions seen. */
  scanned: number;
  groups: number;
  outcomes: SweepOutcome[];
  /** Open transactions whose prepare deadline passed more than STUCK_AFTER_MS ago: the in-doubt gauge. */
  stuck: number;
}

/** An open transaction this long past its prepare deadline is decided and still owed an acknowledgement: in doubt. */
export const STUCK_AFTER_MS = 5 * 60_000;

export async function sweep(deps: SweepDeps, options: SweepOptions): Promise<SweepReport> {
  const maxScanned = options.maxScanned ?? SWEEP_DEFAULTS.maxScanned;
  const concurrency = options.concurrency ?? SWEEP_DEFAULTS.concurrency;
  const remainingMs = options.remainingMs ?? (() => Number.POSITIVE_INFINITY);

  const groups = new Map<string, number>();
  let scanned = 0;
  let stuck = 0;
  const overdueBefore = (deps.now ?? systemClock)() - STUCK_AFTER_MS;
  let startKey: Record<string, unknown> | undefined;
  do {
    const page = await deps.log.openGroups(Math.min(1000, maxScanned - scanned), startKey, overdueBefore);
    stuck += page.overdue;
    for (const [group, n] of Object.entries(page.groups)) {
      groups.set(group, (groups.get(group) ?? 0) + n);
      scanned += n;
    }
    startKey = page.nextKey;
  } while (startKey && scanned < maxScanned);

  const todo = [...groups];
  const outcomes: SweepOutcome[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < todo.length && remainingMs() > SWEEP_DEFAULTS.reserveMs) {
      const [group, open] = todo[next++]!;
      try {
        outcomes.push({ group, open, kind: 'supervised', execution: await ensureSupervisor(deps, options.stateMachineArn, group) });
      } catch (err) {
        outcomes.push({ group, open, kind: 'failed', error: `${(err as Error).name}: ${(err as Error).message}` });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, worker));
  return { scanned, groups: groups.size, outcomes, stuck };
}

const sweeperEnv = z.object({ STATE_MACHINE_ARN: z.string().min(1) });

/** The sweeper's settings from its Lambda environment; a bad deployment fails loudly on the first run. */
export function readSweeperConfig(env: NodeJS.ProcessEnv = process.env): Pick<SweepOptions, 'stateMachineArn'> {
  const parsed = sweeperEnv.safeParse(env);
  if (!parsed.success) {
    throw new Error(`sweeper environment is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return { stateMachineArn: parsed.data.STATE_MACHINE_ARN };
}
