// The simulation's scheduler: virtual time, one seeded random stream, and every process the
// product runs as (a Lambda invocation, a participant's handler run, a sweep, a detector run).
//
// The product's code is real; what it awaits is not. Every call it makes through a port passes a
// gate (`step`) before and after: the scheduler decides when the call's request and its answer
// "arrive", so calls of different processes interleave in an order the seed chooses. A process can
// crash at any gate (its promise chain is dropped: nothing after it runs, as when a Lambda's
// container dies), freeze (its next gate opens much later: a long GC, a frozen container) and
// time out (its host kills it at its deadline). Each host has its own clock skew.
//
// Determinism: there is no I/O; events are the in-memory VirtualTimers', and after each one the loop
// lets the microtask queue drain (`settle`), so the same seed runs the same interleaving.
import { createRandom, type Random } from '../../src/core/random';
import { VirtualTimers, settle } from '../../src/memory/timers';

export interface Host {
  name: string;
  /** Added to the virtual time to give this host's clock. */
  skewMs: number;
}

export class Crashed extends Error {
  constructor(readonly process: string) {
    super(`${process} crashed`);
    this.name = 'Crashed';
  }
}

/** One running process. A dead one never gets past its next gate. */
export class Proc {
  dead = false;
  finished = false;
  /** Set when the process is frozen: its next gate opens no earlier than this (virtual ms). */
  frozenUntil = 0;
  /** Told once if the process dies (a crash or its host's timeout): what its caller sees instead of an answer. */
  onDeath: (() => void) | undefined;
  readonly started: number;
  constructor(
    readonly sim: Scheduler,
    readonly id: number,
    readonly name: string,
    readonly host: Host,
  ) {
    this.started = sim.now;
  }

  /** This host's clock. */
  readonly clock = (): number => this.sim.now + this.host.skewMs;
  /** This host's sleep: resolves after `ms` of virtual time (unless the process dies meanwhile). */
  readonly sleep = (ms: number, signal?: AbortSignal): Promise<void> => this.sim.sleep(this, ms, signal);
}

export interface Gates {
  /** Upper bound of the one-way latency of a call, in virtual ms. */
  latencyMs: number;
  /** Chance that a process crashes at a gate. */
  crash: number;
  /** Chance that a process freezes at a gate, and for how long at most. */
  freeze: number;
  freezeMaxMs: number;
}

/** Virtual time starts here (epoch ms): group names and ISO dates need a real, positive time. */
export const EPOCH_MS = Date.UTC(2026, 10, 30, 12);

export class Scheduler {
  /** Virtual time and its events: the in-memory Step Functions and SQS run on the same timers. */
  readonly timers = new VirtualTimers(EPOCH_MS);
  readonly random: Random;
  private procs = 0;
  readonly trace: string[] | undefined;
  gates: Gates = { latencyMs: 5, crash: 0, freeze: 0, freezeMaxMs: 0 };
  counts = { events: 0, crashes: 0, freezes: 0 };
  /** Called when a process dies, for whoever models what its death means (a Lambda error, a redelivery). */
  readonly live = new Set<Proc>();

  constructor(seed: number, trace = false) {
    this.random = createRandom(seed);
    this.trace = trace ? [] : undefined;
  }

  get now(): number {
    return this.timers.now();
  }

  /** Virtual ms since the run began. */
  get elapsed(): number {
    return this.timers.now() - EPOCH_MS;
  }

  log(line: string): void {
    this.trace?.push(`${String(this.elapsed).padStart(8)} ${line}`);
  }

  /** Run `fn` at virtual time `at` (not before now). */
  at(at: number, run: () => void): { cancel(): void } {
    return this.timers.at(at, run);
  }

  after(ms: number, run: () => void): { cancel(): void } {
    return this.at(this.now + ms, run);
  }

  spawn(name: string, host: Host): Proc {
    const proc = new Proc(this, ++this.procs, name, host);
    this.live.add(proc);
    return proc;
  }

  /** Run `body` as a new process; resolves with its result, or never if it dies (use `onEnd`). */
  run<T>(name: string, host: Host, body: (proc: Proc) => Promise<T>, onEnd?: (outcome: { ok: true; value: T } | { ok: false; error: unknown }) => void): Proc {
    const proc = this.spawn(name, host);
    this.log(`start ${proc.name}#${proc.id}`);
    const finish = (outcome: { ok: true; value: T } | { ok: false; error: unknown }): void => {
      if (proc.dead) return;
      proc.finished = true;
      this.live.delete(proc);
      this.log(`end ${proc.name}#${proc.id} ${outcome.ok ? 'ok' : `error ${describeError(outcome.error)}`}`);
      onEnd?.(outcome);
    };
    // Started from an event, never inline: the caller's own step finishes first.
    this.after(0, () => {
      body(proc).then(
        (value) => finish({ ok: true, value }),
        (error: unknown) => finish({ ok: false, error }),
      );
    });
    return proc;
  }

  kill(proc: Proc, why: string): void {
    if (proc.dead || proc.finished) return;
    proc.dead = true;
    this.live.delete(proc);
    this.counts.crashes++;
    this.log(`crash ${proc.name}#${proc.id}: ${why}`);
    proc.onDeath?.();
  }

  /** Whether the process dies here (a fault drawn at a gate); a dead process never goes on. */
  crashes(proc: Proc): boolean {
    if (proc.dead) return true;
    if (this.gates.crash > 0 && this.random.chance(this.gates.crash)) {
      this.kill(proc, 'fault');
      return true;
    }
    return false;
  }

  /**
   * A gate: the process's next step happens after a random latency, later if it is frozen, never
   * if it is dead. Faults are drawn here, so every call of the product is a place where one can hit.
   */
  step(proc: Proc): Promise<void> {
    if (proc.dead) return new Promise(noop);
    if (proc.finished) throw new Error(`${proc.name}#${proc.id} used a port after it finished`);
    const { latencyMs, freeze, freezeMaxMs } = this.gates;
    if (this.crashes(proc)) return new Promise(noop);
    if (freeze > 0 && this.random.chance(freeze)) {
      const ms = this.random.int(1, freezeMaxMs);
      proc.frozenUntil = Math.max(proc.frozenUntil, this.now + ms);
      this.counts.freezes++;
      this.log(`freeze ${proc.name}#${proc.id} for ${ms} ms`);
    }
    const at = Math.max(this.now + this.random.int(0, latencyMs), proc.frozenUntil);
    return new Promise((resolve) => {
      this.at(at, () => {
        if (!proc.dead) resolve();
      });
    });
  }

  sleep(proc: Proc, ms: number, signal?: AbortSignal): Promise<void> {
    if (proc.dead) return new Promise(noop);
    if (this.trace) this.log(`${proc.name}#${proc.id} sleeps ${ms} ms`);
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason as Error);
        return;
      }
      const timer = this.at(Math.max(this.now + Math.max(0, ms), proc.frozenUntil), () => {
        signal?.removeEventListener('abort', onAbort);
        if (!proc.dead) resolve();
      });
      const onAbort = (): void => {
        timer.cancel();
        // An aborted sleep settles on the next event, like a timer's callback would.
        this.after(0, () => {
          if (!proc.dead) reject(signal!.reason as Error);
        });
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Run events until none is left or virtual time passes `untilMs`. Returns false if it stopped on
   * time. Throws Livelock when time stops moving: that many events at one instant is a loop with no
   * wait in it (a bug of the product, or of a planted mutation), not a busy system.
   */
  async runUntil(untilMs: number, stop?: () => boolean): Promise<boolean> {
    let sameInstant = 0;
    for (;;) {
      if (stop?.()) return true;
      const next = this.timers.nextAt();
      if (next === undefined) return true;
      if (next > untilMs) return false;
      sameInstant = next === this.now ? sameInstant + 1 : 0;
      if (sameInstant > MAX_EVENTS_PER_INSTANT) throw new Livelock(this.elapsed);
      this.timers.fireNext();
      this.counts.events++;
      await settle();
    }
  }
}

const noop = (): void => undefined;

/** Events at one virtual instant beyond which the run is a livelock. */
const MAX_EVENTS_PER_INSTANT = 20_000;

export class Livelock extends Error {
  constructor(readonly atMs: number) {
    super(`livelock: more than ${MAX_EVENTS_PER_INSTANT} events at virtual time ${atMs} ms without time moving`);
    this.name = 'Livelock';
  }
}

export function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Wrap a port so that every method call passes the process's gate before the call (the request
 * travels: latency, a freeze, a crash), and may crash after it (the answer is lost). A process that
 * dies after the call never sees the answer, though the call took effect: exactly the ambiguity of
 * a real network. `process` may be a getter: a warm Lambda container's ports belong to whichever
 * invocation it runs now.
 */
export function gated<T extends object>(target: T, process: Proc | (() => Proc), label: string): T {
  const current = typeof process === 'function' ? process : () => process;
  return new Proxy(target, {
    get(t, key, receiver) {
      const value = Reflect.get(t, key, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        const proc = current();
        const sim = proc.sim;
        await sim.step(proc);
        if (sim.trace) sim.log(`${proc.name}#${proc.id} ${label}.${String(key)}(${traceArgs(args)})`);
        const result = (await (value as (...a: unknown[]) => unknown).apply(t, args)) as unknown;
        // The answer travels back: the process may die before it arrives (the call took effect all the same).
        if (sim.crashes(proc)) return new Promise(noop);
        return result;
      };
    },
  });
}

function traceArgs(args: unknown[]): string {
  return args
    .map((a) => (typeof a === 'string' ? a : typeof a === 'number' ? String(a) : JSON.stringify(a)))
    .join(', ')
    .slice(0, 300);
}
