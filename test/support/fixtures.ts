// Values the tests build over and over: protocol messages, transaction ids, a logger that keeps what
// it was told, the coordinator's configuration, and the one pause that paces load. Not a test file.
import type { CoordinatorConfig } from '../../src/aws/config';
import { PROTOCOL_VERSION, type ParticipantMessage } from '../../src/core/messages';

export function message(type: ParticipantMessage['type'], txId: string, participant: string, operation?: unknown): ParticipantMessage {
  return {
    v: PROTOCOL_VERSION,
    type,
    txId,
    participant,
    ...(operation === undefined ? {} : { operation }),
    deadlineAt: 4_102_444_800_000,
    attempt: 1,
  };
}

/** A logger that keeps what it was told, so tests can check that failures were reported. */
export function memoryLogger(): { lines: { level: string; message: string; extra: unknown[] }[]; info(m: string, ...e: unknown[]): void; warn(m: string, ...e: unknown[]): void; error(m: string, ...e: unknown[]): void } {
  const lines: { level: string; message: string; extra: unknown[] }[] = [];
  return {
    lines,
    info: (message, ...extra) => lines.push({ level: 'info', message, extra }),
    warn: (message, ...extra) => lines.push({ level: 'warn', message, extra }),
    error: (message, ...extra) => lines.push({ level: 'error', message, extra }),
  };
}

let counter = 0;
/** Unique, protocol-valid transaction ids without randomness. */
export function newTxId(label = 'tx'): string {
  counter++;
  return `${label}-${String(counter).padStart(8, '0')}`;
}

/** The configuration of a coordinator for `services` on the log table `txTable`, with the deployment's default timeouts. */
export function coordinatorConfig(txTable: string, services: readonly string[]): CoordinatorConfig {
  return {
    txTable,
    participantQueues: Object.fromEntries(services.map((s) => [s, `q-${s}`])),
    replyQueueArns: Object.fromEntries(services.map((s) => [s, `arn:aws:sqs:us-east-1:000000000000:dtc-${s}-replies`])),
    stateMachineArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:dtc-supervisor',
    retentionDays: 30,
    defaults: { prepareSeconds: 10, commitSeconds: 30 },
  };
}

/**
 * Wait `ms` to pace load or to simulate work (chaos, contention, a slow participant). Never before
 * an assertion: wait for the condition instead (vi.waitFor, expect.poll).
 */
export function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
