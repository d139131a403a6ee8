// A task repeated while something runs (heartbeats, visibility extensions, inquiry ticks), as a
// loop over the injected Sleep rather than a timer, so virtual time drives it in a simulation.
import type { Sleep } from '../core/ports';

const STOPPED = new Error('stopped');

export interface Repeating {
  /** Ends the loop and waits for the task in flight, if any. */
  stop(): Promise<void>;
}

/**
 * Runs `task` every `periodMs` (measured from the end of the previous run: never two at once, a
 * slow run delays the next), passing its failures to `onError` instead of throwing.
 */
export function repeatEvery(sleep: Sleep, periodMs: number, task: () => Promise<unknown>, onError: (err: unknown) => void): Repeating {
  const stopped = new AbortController();
  const pauseMs = Math.max(1, Math.floor(periodMs));
  const loop = (async () => {
    while (!stopped.signal.aborted) {
      try {
        await sleep(pauseMs, stopped.signal);
      } catch (err) {
        if (stopped.signal.aborted) return;
        throw err;
      }
      if (stopped.signal.aborted) return;
      await task().catch(onError);
    }
  })();
  return {
    async stop() {
      // A reason of our own: without one, abort() builds a DOMException (a stack trace) each time.
      stopped.abort(STOPPED);
      await loop;
    },
  };
}
