// The real clock, ids, randomness and timers: the default of every injected Clock, IdSource,
// RandomSource and Sleep port (src/core/ports.ts). The one place outside the AWS adapters and the
// local stack that reads them, so a simulation that passes its own ports replays a run exactly.
import { randomUUID } from 'node:crypto';
import type { Clock, IdSource, RandomSource, Sleep } from '../core/ports';

export const systemClock: Clock = () => Date.now();

export const systemIds: IdSource = () => randomUUID();

export const systemRandom: RandomSource = () => Math.random();

/** setTimeout as a promise; an abort clears the timer and rejects with the signal's reason. */
export const systemSleep: Sleep = (ms, signal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
