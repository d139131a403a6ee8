import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ABORTED_REASON,
  ABSENT,
  BarrierBusyError,
  type BarrierMessageType,
  type BarrierPorts,
  type BarrierRecord,
  type DecideContext,
  type Outcome,
  type Progress,
  ProtocolViolationError,
  type StoredBarrier,
  decide,
  renewClaim,
  runBarrier,
} from '../../src/core/barrier';
import type { Vote } from '../../src/core/messages';

const LEASE_MS = 1_000;
const ctx: DecideContext = { nowMs: 10_000, runId: 'me', leaseMs: LEASE_MS };
const op = { items: 1 };

const RECORDS: Record<string, BarrierRecord> = {
  NONE: { state: 'NONE' },
  'PREPARING(mine)': { state: 'PREPARING', operation: op, claim: { runId: 'me', untilMs: 10_500 } },
  'PREPARING(other, live)': { state: 'PREPARING', operation: op, claim: { runId: 'other', untilMs: 10_500 } },
  'PREPARING(other, expired)': { state: 'PREPARING', operation: op, claim: { runId: 'other', untilMs: 10_000 } },
  'PREPARED(YES)': { state: 'PREPARED', operation: op, vote: 'YES' },
  'PREPARED(NO)': { state: 'PREPARED', operation: op, vote: 'NO', reason: 'short' },
  'PREPARED(READ_ONLY)': { state: 'PREPARED', operation: op, vote: 'READ_ONLY' },
  COMMITTED: { state: 'COMMITTED', operation: op },
  'ABORTED(prepareStarted)': { state: 'ABORTED', prepareStarted: true, operation: op },
  'ABORTED(null compensation)': { state: 'ABORTED', prepareStarted: false },
};

const PROGRESSES: Progress[] = [];
for (const prepared of [undefined, { vote: 'YES' as const }, { vote: 'NO' as const, reason: 'short' }, { vote: 'READ_ONLY' as const }]) {
  for (const compensated of [false, true]) {
    for (const committed of [false, true]) PROGRESSES.push({ ...(prepared ? { prepared } : {}), compensated, committed });
  }
}
const TYPES: BarrierMessageType[] = ['PREPARE', 'COMMIT', 'ABORT'];

function everyDecision(): { name: string; record: BarrierRecord; type: BarrierMessageType; progress: Progress; step: ReturnType<typeof decide> }[] {
  const all = [];
  for (const [name, record] of Object.entries(RECORDS)) {
    for (const type of TYPES) {
      for (const progress of PROGRESSES) all.push({ name, record, type, progress, step: decide(record, type, op, progress, ctx) });
    }
  }
  return all;
}

describe('decide: the rules for a fresh delivery', () => {
  const fresh = { compensated: false, committed: false };
  const cases: [string, BarrierMessageType, string][] = [
    ['NONE', 'PREPARE', 'write PREPARING'],
    ['PREPARING(mine)', 'PREPARE', 'prepare'],
    ['PREPARING(other, live)', 'PREPARE', 'busy'],
    ['PREPARING(other, expired)', 'PREPARE', 'write PREPARING'],
    ['PREPARED(YES)', 'PREPARE', 'vote YES'],
    ['PREPARED(NO)', 'PREPARE', 'abort'],
    ['PREPARED(READ_ONLY)', 'PREPARE', 'abort'],
    ['COMMITTED', 'PREPARE', 'done'],
    ['ABORTED(prepareStarted)', 'PREPARE', 'abort'],
    ['ABORTED(null compensation)', 'PREPARE', 'vote NO'],
    ['NONE', 'COMMIT', 'violation'],
    ['PREPARING(mine)', 'COMMIT', 'violation'],
    ['PREPARED(YES)', 'COMMIT', 'commit'],
    ['PREPARED(NO)', 'COMMIT', 'violation'],
    ['PREPARED(READ_ONLY)', 'COMMIT', 'write COMMITTED'],
    ['COMMITTED', 'COMMIT', 'ack COMMIT'],
    ['ABORTED(prepareStarted)', 'COMMIT', 'violation'],
    ['NONE', 'ABORT', 'write ABORTED'],
    ['PREPARING(other, live)', 'ABORT', 'write ABORTED'],
    ['PREPARED(YES)', 'ABORT', 'write ABORTED'],
    ['PREPARED(NO)', 'ABORT', 'write ABORTED'],
    ['ABORTED(prepareStarted)', 'ABORT', 'abort'],
    ['ABORTED(null compensation)', 'ABORT', 'ack ABORT'],
    ['COMMITTED', 'ABORT', 'violation'],
  ];
  it.each(cases)('%s + %s -> %s', (name, type, expected) => {
    const step = decide(RECORDS[name]!, type, op, fresh, ctx);
    const label =
      step.kind === 'write' ? `write ${step.next.state}` : step.kind === 'vote' ? `vote ${step.vote}` : step.kind === 'ack' ? `ack ${step.phase}` : step.kind;
    expect(label).toBe(expected);
  });

  it('ABORT before PREPARE records a null compensation that later PREPAREs answer NO without user code', () => {
    const step = decide(RECORDS.NONE!, 'ABORT', undefined, fresh, ctx);
    expect(step).toEqual({ kind: 'write', next: { state: 'ABORTED', prepareStarted: false } });
    expect(decide(RECORDS['ABORTED(null compensation)']!, 'PREPARE', op, fresh, ctx)).toEqual({ kind: 'vote', vote: 'NO', reason: ABORTED_REASON });
  });

  it('a takeover keeps the operation stored by the first PREPARE', () => {
    const step = decide(RECORDS['PREPARING(other, expired)']!, 'PREPARE', { other: true }, fresh, ctx);
    expect(step).toEqual({ kind: 'write', next: { state: 'PREPARING', operation: op, claim: { runId: 'me', untilMs: 11_000 } } });
  });
});

describe('decide: invariants over every state, message and progress', () => {
  const all = everyDecision();

  it('user prepare starts only on a PREPARING record this run claimed, never after ABORT or COMMIT', () => {
    for (const d of all.filter((x) => x.step.kind === 'prepare')) {
      expect(d.type).toBe('PREPARE');
      expect(d.name).toBe('PREPARING(mine)');
      expect(d.progress.prepared).toBeUndefined();
    }
  });

  it('user commit runs only for COMMIT on PREPARED(YES), once per delivery', () => {
    for (const d of all.filter((x) => x.step.kind === 'commit')) {
      expect([d.type, d.name, d.progress.committed]).toEqual(['COMMIT', 'PREPARED(YES)', false]);
    }
  });

  it('user abort never undoes a recorded YES that may still commit, and never runs for COMMIT', () => {
    for (const d of all.filter((x) => x.step.kind === 'abort')) {
      expect(d.type).not.toBe('COMMIT');
      expect(d.name).not.toBe('PREPARED(YES)');
      expect(d.name).not.toMatch(/PREPARING/);
      expect(d.progress.compensated).toBe(false);
    }
  });

  it('each message writes only its own states and answers with its own reply kind', () => {
    for (const { type, step } of all) {
      if (step.kind === 'write') {
        const allowed = { PREPARE: ['PREPARING', 'PREPARED'], COMMIT: ['COMMITTED'], ABORT: ['ABORTED'] }[type];
        expect(allowed).toContain(step.next.state);
      }
      if (step.kind === 'vote') expect(type).toBe('PREPARE');
      if (step.kind === 'ack') expect(step.phase).toBe(type);
    }
  });

  it('terminal states are never left', () => {
    for (const d of all.filter((x) => x.record.state === 'COMMITTED' || x.record.state === 'ABORTED')) {
      expect(d.step.kind).not.toBe('write');
    }
  });

  it('renewClaim only extends a claim the run still owns', () => {
    expect(renewClaim(RECORDS['PREPARING(mine)']!, 'me', 20_000, LEASE_MS)).toMatchObject({ claim: { runId: 'me', untilMs: 21_000 } });
    expect(renewClaim(RECORDS['PREPARING(other, live)']!, 'me', 20_000, LEASE_MS)).toBeUndefined();
    expect(renewClaim(RECORDS['PREPARED(YES)']!, 'me', 20_000, LEASE_MS)).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// A model participant driven by runBarrier itself. Every port call (store read/write, each user
// effect, the reply) waits at a gate; the property's choices pick which gate opens next, which
// message is delivered next, and which run crashes at its gate (it stops for good; SQS redelivers).

class Crash extends Error {}

interface Gate {
  run: Run;
  resolve(): void;
  reject(err: Error): void;
}

interface Run {
  id: string;
  type: BarrierMessageType;
  live: boolean;
  lastRead?: BarrierRecord;
}

interface Scenario {
  /** What successive user prepare calls answer: real prepares may differ as stock changes. */
  userVotes: Vote[];
  /** Presumed abort lets a coordinator skip ABORT for participants that voted NO. */
  abortToNoVoters: boolean;
  decision: 'COMMIT' | 'ABORT';
  prepareCopies: number;
  decisionCopies: number;
  abortEarly: boolean;
  maxCrashes: number;
  /** Instead of crashing, a run pauses past its lease (GC pause, frozen process) and resumes later. */
  stalls: boolean;
  /** How many other gate openings a stalled run sits out before it resumes. */
  stallFor: number;
  /** Which run moves next: indexes into the open gates and undelivered messages. */
  choices: number[];
  /** The gate openings (counted from 0) at which the run crashes or stalls instead. */
  faultsAt: number[];
}

class Model {
  store: StoredBarrier = ABSENT;
  held = false;
  committedCount = 0;
  clockMs = 0;
  votes: { vote: Vote; reason?: string }[] = [];
  acks: string[] = [];
  violations: string[] = [];
  prepareAfterAbortRead = 0;
  busyCount = 0;
  crashes = 0;
  /**
   * Prepare effects that landed after a commit effect, while COMMITTED was not yet written or another
   * COMMIT run was still going: the window the barrier leaves open (see src/core/barrier.ts).
   */
  residualWindowHits = 0;
  private commitEffectDone = false;
  sent: BarrierMessageType | 'NONE' | undefined;
  private gates: Gate[] = [];
  private stalled: { gate: Gate; untilOpened: number }[] = [];
  private pending: BarrierMessageType[] = [];
  private runs: Run[] = [];
  private nextRun = 0;
  private prepareCalls = 0;

  constructor(private readonly sc: Scenario) {
    for (let i = 0; i < sc.prepareCopies; i++) this.pending.push('PREPARE');
    if (sc.decision === 'ABORT' && sc.abortEarly) this.sendDecision('ABORT');
  }

  async simulate(): Promise<number> {
    let choice = 0;
    let opened = 0;
    for (let tick = 0; tick < 10_000; tick++) {
      await new Promise((r) => setImmediate(r));
      this.resumeStalled(opened);
      const options = this.gates.length + this.pending.length;
      if (options === 0) return tick;
      const index = (this.sc.choices[choice++] ?? 0) % options;
      if (index < this.gates.length) {
        const [gate] = this.gates.splice(index, 1);
        const fault = this.sc.faultsAt.includes(opened++) && this.crashes < this.sc.maxCrashes;
        if (fault && this.sc.stalls) this.stall(gate!, opened);
        else if (fault) this.crash(gate!);
        else gate!.resolve();
      } else {
        const [type] = this.pending.splice(index - this.gates.length, 1);
        this.deliver(type!);
      }
    }
    throw new Error('simulation did not settle');
  }

  private crash(gate: Gate): void {
    this.crashes++;
    gate.run.live = false;
    gate.reject(new Crash());
    this.leasePasses();
  }

  /** The stalled run waits at its gate while others move; its lease runs out meanwhile. */
  private stall(gate: Gate, opened: number): void {
    this.crashes++;
    this.stalled.push({ gate, untilOpened: opened + this.sc.stallFor });
    this.leasePasses(gate.run);
  }

  private resumeStalled(opened: number): void {
    const nothingElse = this.gates.length + this.pending.length === 0;
    for (const s of [...this.stalled]) {
      if (s.untilOpened > opened && !nothingElse) continue;
      this.stalled.splice(this.stalled.indexOf(s), 1);
      this.gates.push(s.gate);
    }
  }

  /** Time passes beyond one lease: live runs renew their claim (the runner's heartbeat), others lose it. */
  private leasePasses(paused?: Run): void {
    this.clockMs += LEASE_MS + 1;
    const record = this.store.record;
    if (record.state === 'PREPARING' && this.runs.some((r) => r.live && r !== paused && r.id === record.claim.runId)) {
      this.store = { rev: this.store.rev + 1, record: renewClaim(record, record.claim.runId, this.clockMs, LEASE_MS)! };
    }
  }

  private sendDecision(type: BarrierMessageType): void {
    if (this.sent) return;
    this.sent = type;
    for (let i = 0; i < this.sc.decisionCopies; i++) this.pending.push(type);
  }

  private gate(run: Run): Promise<void> {
    return new Promise<void>((resolve, reject) => this.gates.push({ run, resolve, reject }));
  }

  private deliver(type: BarrierMessageType): void {
    const run: Run = { id: `run-${this.nextRun++}`, type, live: true };
    this.runs.push(run);
    void runBarrier(type, type === 'PREPARE' ? { hold: 1 } : undefined, this.ports(run), { runId: run.id, leaseMs: LEASE_MS })
      .then(async (outcome) => {
        await this.gate(run);
        this.reply(outcome);
        run.live = false;
      })
      .catch((err: unknown) => {
        run.live = false;
        if (err instanceof Crash) this.pending.push(type);
        else if (err instanceof BarrierBusyError) {
          this.busyCount++;
          this.pending.push(type);
        } else if (err instanceof ProtocolViolationError) this.violations.push(`${type}: ${err.message}`);
        else throw err;
      });
  }

  private reply(outcome: Outcome): void {
    if (outcome.kind === 'ack') this.acks.push(outcome.phase);
    if (outcome.kind !== 'vote') return;
    this.votes.push({ vote: outcome.vote, ...(outcome.reason ? { reason: outcome.reason } : {}) });
    // The model coordinator: COMMIT only after a YES, ABORT after a NO or whenever it chose to abort.
    if (outcome.vote === 'NO') {
      if (this.sc.abortToNoVoters) this.sendDecision('ABORT');
      else this.sent ??= 'NONE';
    }
    else if (this.sc.decision === 'ABORT') this.sendDecision('ABORT');
    else if (outcome.vote === 'YES') this.sendDecision('COMMIT');
  }

  private ports(run: Run): BarrierPorts {
    return {
      nowMs: () => this.clockMs,
      read: async () => {
        await this.gate(run);
        run.lastRead = this.store.record;
        return this.store;
      },
      write: async (expectedRev, next) => {
        await this.gate(run);
        if (this.store.rev !== expectedRev) return false;
        this.store = { rev: expectedRev + 1, record: next };
        return true;
      },
      prepare: async () => {
        await this.gate(run);
        if (this.store.record.state === 'ABORTED' && run.lastRead?.state === 'ABORTED') this.prepareAfterAbortRead++;
        // The effect lands later than the check, as a slow conditional update would.
        await this.gate(run);
        const commitRunning = this.runs.some((r) => r.live && r.type === 'COMMIT');
        if (this.commitEffectDone && (this.store.record.state !== 'COMMITTED' || commitRunning)) this.residualWindowHits++;
        const vote = this.sc.userVotes[this.prepareCalls++ % this.sc.userVotes.length]!;
        // NO leaves a partial effect behind, as a multi-item prepare that fails halfway does.
        if (vote !== 'READ_ONLY') this.held = true;
        return { vote, ...(vote === 'NO' ? { reason: 'short' } : {}) };
      },
      commit: async () => {
        await this.gate(run);
        this.commitEffectDone = true;
        if (this.held) {
          this.held = false;
          this.committedCount++;
        }
      },
      abort: async () => {
        await this.gate(run);
        this.held = false;
      },
    };
  }
}

const scenario: fc.Arbitrary<Scenario> = fc.record({
  userVotes: fc.array(fc.constantFrom<Vote>('YES', 'YES', 'NO', 'READ_ONLY'), { minLength: 1, maxLength: 3 }),
  abortToNoVoters: fc.boolean(),
  decision: fc.constantFrom<'COMMIT' | 'ABORT'>('COMMIT', 'ABORT'),
  prepareCopies: fc.integer({ min: 1, max: 3 }),
  decisionCopies: fc.integer({ min: 1, max: 3 }),
  abortEarly: fc.boolean(),
  maxCrashes: fc.integer({ min: 0, max: 3 }),
  stalls: fc.constant(false),
  stallFor: fc.nat(30),
  choices: fc.array(fc.nat(64), { maxLength: 150 }),
  faultsAt: fc.array(fc.nat(40), { maxLength: 3 }),
});

describe('runBarrier under duplicates, reordering and crashes (model participant)', () => {
  it('commits exactly once, leaves no hold after abort, never hangs, and keeps its vote', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (sc) => {
        const model = new Model(sc);
        await model.simulate();

        expect(model.violations).toEqual([]);
        expect(model.prepareAfterAbortRead).toBe(0);
        expect(model.held).toBe(false);
        if (model.sent === 'COMMIT') {
          expect(model.committedCount).toBe(1);
          expect(model.acks).toContain('COMMIT');
          expect(model.store.record.state).toBe('COMMITTED');
        } else {
          expect(model.committedCount).toBe(0);
        }
        if (model.sent === 'ABORT') {
          expect(model.acks).toContain('ABORT');
          expect(model.store.record.state).toBe('ABORTED');
        }
        const ownVotes = new Set(model.votes.filter((v) => v.reason !== ABORTED_REASON).map((v) => v.vote));
        expect(ownVotes.size).toBeLessThanOrEqual(1);
        if (model.sent !== 'ABORT') expect(model.votes.length).toBeGreaterThan(0);
      }),
      { numRuns: 3000 },
    );
  });

  it('with runs stalled past their lease: an abort leaves nothing; a commit happens once and leaves nothing unless a prepare landed during it', async () => {
    await fc.assert(
      fc.asyncProperty(
        scenario.map((sc) => ({ ...sc, stalls: true, maxCrashes: Math.max(1, sc.maxCrashes) })),
        async (sc) => {
          const model = new Model(sc);
          await model.simulate();

          expect(model.violations).toEqual([]);
          if (model.sent === 'COMMIT') {
            // The one race the barrier cannot close without a tombstone on the user's item
            // (src/core/barrier.ts): a stalled prepare lands its effect while a commit is under way.
            if (model.residualWindowHits === 0) {
              expect(model.committedCount).toBe(1);
              expect(model.held).toBe(false);
            }
          } else {
            expect(model.committedCount).toBe(0);
            expect(model.held).toBe(false);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('a PREPARE after a recorded ABORT votes NO and never calls user prepare', async () => {
    let prepareCalls = 0;
    let stored: StoredBarrier = { rev: 1, record: { state: 'ABORTED', prepareStarted: false } };
    const ports: BarrierPorts = {
      nowMs: () => 0,
      read: async () => stored,
      write: async (rev, next) => {
        if (rev !== stored.rev) return false;
        stored = { rev: rev + 1, record: next };
        return true;
      },
      prepare: async () => {
        prepareCalls++;
        return { vote: 'YES' };
      },
      commit: async () => {},
      abort: async () => {},
    };
    const outcome = await runBarrier('PREPARE', op, ports, { runId: 'r', leaseMs: LEASE_MS });
    expect(outcome).toEqual({ kind: 'vote', vote: 'NO', reason: ABORTED_REASON });
    expect(prepareCalls).toBe(0);
    expect(stored.rev).toBe(1);
  });

  it('a store whose record keeps changing ends in a bounded error', async () => {
    let rev = 0;
    const ports: BarrierPorts = {
      nowMs: () => 0,
      read: async () => ({ rev: ++rev, record: { state: 'NONE' } }),
      write: async () => false,
      prepare: async () => ({ vote: 'YES' }),
      commit: async () => {},
      abort: async () => {},
    };
    await expect(runBarrier('ABORT', undefined, ports, { runId: 'r', leaseMs: LEASE_MS, maxSteps: 5 })).rejects.toThrow(/did not settle/);
  });
});
