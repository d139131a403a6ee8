// Decision events on EventBridge (docs/events.md): the DecisionEventsPort over PutEvents. Events are
// kept in memory while the invocation works and published when it is done (withTelemetry flushes),
// ten to a PutEvents call, so a reply batch or a supervision run that decides many transactions
// pays one request per ten events, and no decision waits for EventBridge. A failure is logged and
// counted (DecisionEventsFailed), never thrown: the decision is in the log whatever happens here.
import { type EventBridgeClient, PutEventsCommand, type PutEventsRequestEntry } from '@aws-sdk/client-eventbridge';
import type { DecisionEvent, DecisionEventsPort } from '../core/ports';
import { METRIC, type MetricsPort } from '../metrics';

/** The `source` of every event. */
export const EVENT_SOURCE = 'dtc';
/** PutEvents takes at most 10 entries per call. */
export const PUT_EVENTS_MAX_ENTRIES = 10;
/** Events kept per invocation at most (a supervision run decides at most 2,000); more are counted as failed. */
export const MAX_PENDING_EVENTS = 10_000;
/** PutEvents calls in flight at once while flushing. */
const FLUSH_CONCURRENCY = 8;
/** One PutEvents call, SDK retries included, gives up after this: a slow EventBridge must not hold the function. */
export const PUT_EVENTS_TIMEOUT_MS = 2_000;

export interface EventsLogger {
  warn(message: string, ...extra: unknown[]): void;
}

export class EventBridgeDecisionEvents implements DecisionEventsPort {
  private pending: DecisionEvent[] = [];

  constructor(
    private readonly client: Pick<EventBridgeClient, 'send'>,
    /** The bus's name or ARN; `default` is the account's default bus. */
    private readonly busName: string,
    private readonly metrics: MetricsPort,
    private readonly logger: EventsLogger,
  ) {}

  publish(event: DecisionEvent): void {
    if (this.pending.length >= MAX_PENDING_EVENTS) {
      this.metrics.count(METRIC.DecisionEventsFailed);
      this.logger.warn('decision event dropped: too many waiting in this invocation', { detailType: event.detailType, txId: event.detail.txId });
      return;
    }
    this.pending.push(event);
  }

  async flush(): Promise<void> {
    const events = this.pending;
    this.pending = [];
    const batches: PutEventsRequestEntry[][] = [];
    for (let i = 0; i < events.length; i += PUT_EVENTS_MAX_ENTRIES) batches.push(events.slice(i, i + PUT_EVENTS_MAX_ENTRIES).map((e) => this.entry(e)));
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < batches.length) await this.put(batches[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(FLUSH_CONCURRENCY, batches.length) }, worker));
  }

  private entry(event: DecisionEvent): PutEventsRequestEntry {
    const d = event.detail;
    const at = 'decidedAt' in d ? d.decidedAt : 'finishedAt' in d ? d.finishedAt : d.since;
    return { EventBusName: this.busName, Source: EVENT_SOURCE, DetailType: event.detailType, Detail: JSON.stringify(d), Time: new Date(at) };
  }

  private async put(entries: PutEventsRequestEntry[]): Promise<void> {
    let failed = entries.length;
    try {
      const out = await this.client.send(new PutEventsCommand({ Entries: entries }), { abortSignal: AbortSignal.timeout(PUT_EVENTS_TIMEOUT_MS) });
      failed = out.FailedEntryCount ?? 0;
      if (failed > 0) {
        const codes = [...new Set((out.Entries ?? []).flatMap((e) => (e.ErrorCode ? [`${e.ErrorCode}: ${e.ErrorMessage ?? ''}`] : [])))];
        this.logger.warn('decision events refused by EventBridge', { failed, of: entries.length, errors: codes });
      }
    } catch (err) {
      this.logger.warn('decision events not published', { count: entries.length, error: `${(err as Error).name}: ${(err as Error).message}` });
    }
    if (entries.length - failed > 0) this.metrics.count(METRIC.DecisionEventsPublished, entries.length - failed);
    if (failed > 0) this.metrics.count(METRIC.DecisionEventsFailed, failed);
  }
}
