// In-doubt inquiry: a participant that voted YES holds its prepared state until it hears the
// decision. If COMMIT or ABORT does not arrive within a bound after the prepare deadline (lost
// messages, a coordinator that crashed), it asks: reads the decision (DecisionSource) and applies
// it through the barrier exactly as if the message had arrived, then acknowledges it.
import type { Outcome } from '../core/barrier';
import { PROTOCOL_VERSION, type ParticipantMessage } from '../core/messages';
import { backoffMs, type DecisionAnswer } from '../core/recovery';
import type { DecisionSource } from './decisions';

/** Ask this long after the prepare deadline when no decision has arrived. */
export const DEFAULT_INQUIRE_AFTER_MS = 30_000;
/** Unanswered questions (PENDING, or the source failed) are asked again, backing off up to this. */
export const DEFAULT_INQUIRY_MAX_BACKOFF_MS = 60_000;
/** At most this many transactions are watched in memory; beyond it the oldest are dropped (logged). */
export const MAX_WATCHED = 100_000;

interface Entry {
  askAtMs: number;
  asks: number;
}

/** The YES votes this process has sent and not yet seen decided, with when to ask about each. */
export class InDoubtWatch {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly inquireAfterMs: number,
    private readonly maxBackoffMs: number,
    private readonly onDrop: (txId: string) => void = () => undefined,
  ) {
    if (!(inquireAfterMs >= 0)) throw new Error(`inquireAfterMs must be >= 0, got ${inquireAfterMs}`);
  }

  get size(): number {
    return this.entries.size;
  }

  has(txId: string): boolean {
    return this.entries.has(txId);
  }

  /** Called with every delivery's outcome: a YES or READ_ONLY vote (both hold until the decision) starts the watch; an ACK or a NO ends it. */
  note(message: Pick<ParticipantMessage, 'type' | 'txId' | 'deadlineAt'>, outcome: Outcome, nowMs: number): void {
    if (message.type === 'PREPARE' && outcome.kind === 'vote' && (outcome.vote === 'YES' || outcome.vote === 'READ_ONLY')) {
      this.watch(message.txId, Math.max(message.deadlineAt, nowMs) + this.inquireAfterMs);
    } else if (outcome.kind === 'ack' || (outcome.kind === 'vote' && outcome.vote === 'NO')) {
      this.entries.delete(message.txId);
    }
  }

  /** Watch `txId`, asking at `askAtMs` unless it is watched already. */
  watch(txId: string, askAtMs: number): void {
    if (this.entries.has(txId)) return;
    if (this.entries.size >= MAX_WATCHED) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) {
        this.entries.delete(oldest.value);
        this.onDrop(oldest.value);
      }
    }
    this.entries.set(txId, { askAtMs, asks: 0 });
  }

  /** Watched transactions whose time to ask has come, earliest first, at most `max`. */
  due(nowMs: number, max: number): string[] {
    const ready: [string, number][] = [];
    for (const [txId, e] of this.entries) if (e.askAtMs <= nowMs) ready.push([txId, e.askAtMs]);
    return ready
      .sort((a, b) => a[1] - b[1])
      .slice(0, max)
      .map(([txId]) => txId);
  }

  /** No answer yet: ask again later, with capped exponential backoff and jitter. */
  postpone(txId: string, nowMs: number, random: number): void {
    const e = this.entries.get(txId);
    if (!e) return;
    e.asks++;
    e.askAtMs = nowMs + 1_000 + backoffMs(e.asks, 1_000, this.maxBackoffMs, random);
  }
}

export interface InquiryPorts {
  participant: string;
  decisions: DecisionSource;
  /** The runner's handler: barrier, user code, ACK. */
  handle(message: ParticipantMessage): Promise<Outcome>;
  nowMs(): number;
  /** Jitter for the backoff of unanswered questions. */
  random(): number;
}

/**
 * Ask for one transaction's decision and apply it. Applying is a COMMIT or ABORT delivered to
 * ourselves: the barrier decides what runs, so an answer that races the real message, or arrives
 * twice, changes nothing twice.
 */
export async function inquire(ports: InquiryPorts, txId: string): Promise<DecisionAnswer> {
  const answer = await ports.decisions.read(txId);
  if (answer === 'PENDING') return answer;
  const message: ParticipantMessage = { v: PROTOCOL_VERSION, type: answer, txId, participant: ports.participant, deadlineAt: ports.nowMs(), attempt: 1 };
  await ports.handle(message);
  return answer;
}

export interface InquiryReport {
  asked: number;
  applied: number;
  pending: number;
  failed: number;
}

/** Ask about every due transaction, at most `max`, a few at a time. Never throws. */
export async function inquireDue(
  ports: InquiryPorts,
  watch: InDoubtWatch,
  max: number,
  onError: (txId: string, err: unknown) => void,
): Promise<InquiryReport> {
  const report: InquiryReport = { asked: 0, applied: 0, pending: 0, failed: 0 };
  const due = watch.due(ports.nowMs(), max);
  const concurrency = 4;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < due.length) {
      const txId = due[next++]!;
      report.asked++;
      try {
        const answer = await inquire(ports, txId);
        if (answer === 'PENDING') {
          report.pending++;
          watch.postpone(txId, ports.nowMs(), ports.random());
        } else {
          // The ACK outcome, noted by the runner, has ended the watch.
          report.applied++;
        }
      } catch (err) {
        report.failed++;
        watch.postpone(txId, ports.nowMs(), ports.random());
        onError(txId, err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, due.length) }, worker));
  return report;
}
