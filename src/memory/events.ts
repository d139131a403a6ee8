// Decision events in memory: what was taken, and what a flush published, in order. Tests and the
// simulation read `published` as a subscriber on the bus would see it.
import type { DecisionEvent, DecisionEventsPort } from '../core/ports';

export class MemoryDecisionEvents implements DecisionEventsPort {
  /** Taken, not yet flushed. */
  pending: DecisionEvent[] = [];
  /** Flushed: what reached the bus. */
  readonly published: DecisionEvent[] = [];

  publish(event: DecisionEvent): void {
    this.pending.push(event);
  }

  flush(): Promise<void> {
    this.published.push(...this.pending);
    this.pending = [];
    return Promise.resolve();
  }
}
