// Virtual time: a Timers whose clock moves only when its driver says so. Callbacks fire in (time,
// scheduling order), and between two callbacks every promise continuation they caused runs, so
// the same schedule of calls gives the same run whatever the host's speed.
import type { Timer, Timers } from '../core/ports';

interface Scheduled {
  timeMs: number;
  seq: number;
  callback: () => void;
  cancelled: boolean;
}

/** Most callbacks one advance runs: a timer that keeps re-arming itself at `now` is a bug, not a wait. */
const MAX_CALLBACKS_PER_ADVANCE = 1_000_000;

/** Lets every pending promise continuation run (they are microtasks; setImmediate runs after them). */
export function settle(): Promise<void> {
  // The one real timer virtual time needs: it waits for the microtask queue to empty, never for time.
  // eslint-disable-next-line no-restricted-globals
  return new Promise((resolve) => setImmediate(resolve));
}

export class VirtualTimers implements Timers {
  private nowMs: number;
  private seq = 0;
  /** A binary heap ordered by (time, seq); cancelled entries are dropped when they reach the top. */
  private readonly heap: Scheduled[] = [];

  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  at(timeMs: number, callback: () => void): Timer {
    if (!Number.isFinite(timeMs)) throw new Error(`timer time must be finite, got ${timeMs}`);
    const entry: Scheduled = { timeMs: Math.max(timeMs, this.nowMs), seq: this.seq++, callback, cancelled: false };
    heapPush(this.heap, entry);
    return { cancel: () => void (entry.cancelled = true) };
  }

  /** When the next live timer is due, or undefined if none is scheduled. */
  nextAt(): number | undefined {
    while (this.heap[0]?.cancelled) heapPop(this.heap);
    return this.heap[0]?.timeMs;
  }

  /**
   * Fire the next live timer if it is due by `untilMs`, moving the clock to it; false if there is
   * none. It does not settle: the caller lets the continuations run (see `settle`).
   */
  fireNext(untilMs = Number.POSITIVE_INFINITY): boolean {
    const next = this.nextAt();
    if (next === undefined || next > untilMs) return false;
    const entry = heapPop(this.heap)!;
    this.nowMs = entry.timeMs;
    entry.callback();
    return true;
  }

  /** Fire every timer due up to `timeMs` in order (settling after each), then set the clock to it. */
  async advanceTo(timeMs: number): Promise<void> {
    if (timeMs < this.nowMs) throw new Error(`time cannot go back: now ${this.nowMs}, asked ${timeMs}`);
    await settle();
    for (let fired = 0; this.fireNext(timeMs); fired++) {
      if (fired >= MAX_CALLBACKS_PER_ADVANCE) throw new Error(`more than ${MAX_CALLBACKS_PER_ADVANCE} timers due by ${timeMs}`);
      await settle();
    }
    this.nowMs = timeMs;
  }

  advance(ms: number): Promise<void> {
    return this.advanceTo(this.nowMs + ms);
  }

  /**
   * Run timers until `done()` holds, jumping the clock from one due timer to the next; throws
   * when nothing is scheduled any more or `limitMs` of virtual time passed without it.
   */
  async runUntil(done: () => boolean, limitMs = 24 * 3_600_000): Promise<void> {
    const endMs = this.nowMs + limitMs;
    await settle();
    while (!done()) {
      const next = this.nextAt();
      if (next === undefined) throw new Error('runUntil: nothing is scheduled and the condition does not hold');
      if (next > endMs) throw new Error(`runUntil: the condition did not hold within ${limitMs} ms of virtual time`);
      await this.advanceTo(next);
    }
  }
}

function before(a: Scheduled, b: Scheduled): boolean {
  return a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.seq < b.seq);
}

function heapPush(heap: Scheduled[], entry: Scheduled): void {
  heap.push(entry);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(heap[i]!, heap[parent]!)) break;
    [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
    i = parent;
  }
}

function heapPop(heap: Scheduled[]): Scheduled | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length > 0 && last) {
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
      if (m === i) break;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  }
  return top;
}
