// The Timers port on the host's real clock and setTimeout.
import type { Timer, Timers } from '../core/ports';

/** setTimeout caps a delay at 2^31-1 ms; longer ones are re-armed until due. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const realTimers: Timers = {
  now: () => Date.now(),
  at(timeMs: number, callback: () => void): Timer {
    let handle: NodeJS.Timeout | undefined;
    const arm = (): void => {
      const leftMs = timeMs - Date.now();
      handle = setTimeout(() => (timeMs - Date.now() > 0 ? arm() : callback()), Math.min(Math.max(leftMs, 0), MAX_TIMER_MS));
    };
    arm();
    return { cancel: () => clearTimeout(handle) };
  },
};
