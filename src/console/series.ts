// What the console charts, computed from the transactions it has read: throughput and decision
// latency over time, and counts by status. Pure: the records and the time come in.
import { TX_STATUSES, type TxRecord, type TxStatus } from '../core/transaction';

export interface Series {
  /** Bucket start times, epoch seconds (what uPlot takes on its x axis). */
  t: number[];
  /** Transactions started per second in each bucket. */
  started: number[];
  /** Transactions decided per second in each bucket. */
  decided: number[];
  /** Decision latency (decidedAt - createdAt) of the transactions decided in each bucket, in ms; null when none. */
  p50: (number | null)[];
  p99: (number | null)[];
}

/** The nearest-rank percentile of sorted values (p in 0..100); undefined for none. */
export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * Buckets of `bucketMs` ending with the one that holds `nowMs`, covering `windowMs`. A transaction
 * counts as started in the bucket of its createdAt and as decided in the bucket of its decidedAt.
 */
export function seriesOf(records: Iterable<Pick<TxRecord, 'createdAt' | 'decidedAt'>>, nowMs: number, windowMs: number, bucketMs: number): Series {
  const buckets = Math.max(1, Math.ceil(windowMs / bucketMs));
  const last = Math.floor(nowMs / bucketMs) * bucketMs;
  const first = last - (buckets - 1) * bucketMs;
  const started = new Array<number>(buckets).fill(0);
  const decided = new Array<number>(buckets).fill(0);
  const latencies: number[][] = Array.from({ length: buckets }, () => []);
  const slot = (ms: number) => {
    const i = Math.floor((ms - first) / bucketMs);
    return i >= 0 && i < buckets ? i : -1;
  };
  for (const r of records) {
    const createdMs = Date.parse(r.createdAt);
    const s = slot(createdMs);
    if (s >= 0) started[s]!++;
    if (r.decidedAt === undefined) continue;
    const decidedMs = Date.parse(r.decidedAt);
    const d = slot(decidedMs);
    if (d < 0) continue;
    decided[d]!++;
    latencies[d]!.push(decidedMs - createdMs);
  }
  const perSecond = (n: number) => (n * 1000) / bucketMs;
  for (const l of latencies) l.sort((a, b) => a - b);
  return {
    t: started.map((_, i) => (first + i * bucketMs) / 1000),
    started: started.map(perSecond),
    decided: decided.map(perSecond),
    p50: latencies.map((l) => percentile(l, 50) ?? null),
    p99: latencies.map((l) => percentile(l, 99) ?? null),
  };
}

/** How many of the records are in each status (every status named, zeros included). */
export function countByStatus(records: Iterable<Pick<TxRecord, 'status'>>): Record<TxStatus, number> {
  const counts = Object.fromEntries(TX_STATUSES.map((s) => [s, 0])) as Record<TxStatus, number>;
  for (const r of records) counts[r.status]++;
  return counts;
}
