import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ABORTED_REASON,
  ABSENT,
  BarrierBusyError,
  EffectRejectedError,
  MAX_PREPARE_ATTEMPTS,
  type BarrierMessageType,
  type BarrierPorts,
  type BarrierRecord,
  type DecideContext,
  type Outcome,
  type Progress,
  type Step,
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

const EFFECT = ['hold'];
const PROGRESSES: Progress[] = [];
for (const prepared of [undefined, { vote: 'YES' as const, writes: EFFECT }, { vote: 'YES' as const, writes: [] }, { vote: 'NO' as const, reason: 'short', writes: [] }, { vote: 'READ_ONLY' as const, writes: [] }]) {
  for (const phaseTwo of [undefined, ['settle'], []]) PROGRESSES.push({ ...(prepared ? { prepared } : {}), ...(phaseTwo ? { phaseTwo } : {}) });
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
  const fresh: Progress = {};
  const cases: [string, BarrierMessageType, string][] = [
    ['NONE', 'PREPARE', 'write PREPARING'],
    ['PREPARING(mine)', 'PREPARE', 'prepare'],
    ['PREPARING(other, live)', 'PREPARE', 'busy'],
    ['PREPARING(other, expired)', 'PREPARE', 'write PREPARING'],
    ['PREPARED(YES)', 'PREPARE', 'vote YES'],
    ['PREPARED(NO)', 'PREPARE', 'vote NO'],
    ['PREPARED(READ_ONLY)', 'PREPARE', 'vote READ_ONLY'],
    ['COMMITTED', 'PREPARE', 'done'],
    ['ABORTED(prepareStarted)', 'PREPARE', 'vote NO'],
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
    ['PREPARING(mine)', 'ABORT', 'write ABORTED'],
    ['PREPARED(YES)', 'ABORT', 'abort'],
    ['PREPARED(NO)', 'ABORT', 'write ABORTED'],
    ['PREPARED(READ_ONLY)', 'ABORT', 'write ABORTED'],
    ['ABORTED(prepareStarted)', 'ABORT', 'ack ABORT'],
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

  it('user commit is called only for COMMIT on PREPARED(YES), never on an aborted barrier', () => {
    for (const d of all.filter((x) => x.step.kind === 'commit')) {
      expect([d.type, d.name, d.progress.phaseTwo]).toEqual(['COMMIT', 'PREPARED(YES)', undefined]);
    }
  });

  it('user abort is called only for ABORT on PREPARED(YES), never on a committed barrier', () => {
    for (const d of all.filter((x) => x.step.kind === 'abort')) {
      expect([d.type, d.name, d.progress.phaseTwo]).toEqual(['ABORT', 'PREPARED(YES)', undefined]);
    }
  });

  it('an effect is written only with the transition that records it, from the state it was built on', () => {
    for (const d of all.filter((x) => x.step.kind === 'write' && x.step.writes !== undefined)) {
      const step = d.step as Extract<Step, { kind: 'write' }>;
      expect(step.writes!.length).toBeGreaterThan(0);
      const expected = { PREPARE: ['PREPARING(mine)', 'PREPARED'], COMMIT: ['PREPARED(YES)', 'COMMITTED'], ABORT: ['PREPARED(YES)', 'ABORTED'] }[d.type];
      expect([d.name, step.next.state]).toEqual(expected);
      if (d.type === 'PREPARE') expect(step.next).toMatchObject({ vote: 'YES' });
      expect(step.writes).toBe(d.type === 'PREPARE' ? d.progress.prepared!.writes : d.progress.phaseTwo);
    }
  });

  it('a NO or READ_ONLY vote is recorded without any effect', () => {
    for (const d of all.filter((x) => x.step.kind === 'write' && x.step.next.state === 'PREPARED' && x.step.next.vote !== 'YES')) {
      expect((d.step as Extract<Step, { kind: 'write' }>).writes).toBeUndefined();
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
  /** Effects that landed, in order ('hold', 'commit', 'release'). */
  landed: string[] = [];
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

  /** Applies one effect write of the model participant, as the store does inside its atomic write. */
  private apply(write: unknown): void {
    this.landed.push(String(write));
    if (write === 'hold') this.held = true;
    if (write === 'release') this.held = false;
    if (write === 'commit') {
      this.held = false;
      this.committedCount++;
    }
  }

  private ports(run: Run): BarrierPorts {
    return {
      nowMs: () => this.clockMs,
      read: async () => {
        await this.gate(run);
        run.lastRead = this.store.record;
        return this.store;
      },
      // The store's atomic write: the barrier record on its revision, and the effect with it.
      write: async (expectedRev, next, writes) => {
        await this.gate(run);
        if (this.store.rev !== expectedRev) return { kind: 'moved' };
        // The commit and release writes carry the condition that the hold is there.
        if (writes.some((w) => w !== 'hold') && !this.held) return { kind: 'rejected', reason: 'no hold' };
        if (writes.includes('hold') && this.held) return { kind: 'rejected', reason: 'held already' };
        for (const w of writes) this.apply(w);
        this.store = { rev: expectedRev + 1, record: next };
        return { kind: 'written' };
      },
      prepare: async () => {
        await this.gate(run);
        if (this.store.record.state === 'ABORTED' && run.lastRead?.state === 'ABORTED') this.prepareAfterAbortRead++;
        const vote = this.sc.userVotes[this.prepareCalls++ % this.sc.userVotes.length]!;
        return { vote, ...(vote === 'NO' ? { reason: 'short' } : {}), writes: vote === 'YES' ? ['hold'] : [] };
      },
      commit: async () => {
        await this.gate(run);
        return ['commit'];
      },
      abort: async () => {
        await this.gate(run);
        return ['release'];
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
        expect(['', 'hold,commit', 'hold,release']).toContain(model.landed.join(','));
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

  it('with runs stalled past their lease (a paused run resumes and writes): a commit happens exactly once, an abort leaves nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        scenario.map((sc) => ({ ...sc, stalls: true, maxCrashes: Math.max(1, sc.maxCrashes) })),
        async (sc) => {
          const model = new Model(sc);
          await model.simulate();

          expect(model.violations).toEqual([]);
          expect(model.held).toBe(false);
          expect(model.committedCount).toBe(model.sent === 'COMMIT' ? 1 : 0);
          // Exactly the effects of one history: a hold, then its commit or release (or nothing at all).
          expect(['', 'hold,commit', 'hold,release']).toContain(model.landed.join(','));
          if (model.sent === 'COMMIT') expect(model.landed).toEqual(['hold', 'commit']);
        },
      ),
      { numRuns: 3000 },
    );
  });

  /** Ports over one stored record that count the user handlers' calls. */
  function countingPorts(initial: StoredBarrier) {
    const calls = { prepare: 0, commit: 0, abort: 0 };
    const state = { stored: initial, landed: [] as unknown[] };
    const ports: BarrierPorts = {
      nowMs: () => 0,
      read: async () => state.stored,
      write: async (rev, next, writes) => {
        if (rev !== state.stored.rev) return { kind: 'moved' };
        state.landed.push(...writes);
        state.stored = { rev: rev + 1, record: next };
        return { kind: 'written' };
      },
      prepare: async () => {
        calls.prepare++;
        return { vote: 'YES', writes: ['hold'] };
      },
      commit: async () => {
        calls.commit++;
        return ['commit'];
      },
      abort: async () => {
        calls.abort++;
        return ['release'];
      },
    };
    return { ports, calls, state };
  }

  it('a PREPARE after a recorded ABORT votes NO and never calls user prepare', async () => {
    const { ports, calls, state } = countingPorts({ rev: 1, record: { state: 'ABORTED', prepareStarted: false } });
    const outcome = await runBarrier('PREPARE', op, ports, { runId: 'r', leaseMs: LEASE_MS });
    expect(outcome).toEqual({ kind: 'vote', vote: 'NO', reason: ABORTED_REASON });
    expect(calls.prepare).toBe(0);
    expect(state.stored.rev).toBe(1);
  });

  it('never calls user abort on a committed barrier: an ABORT there is a protocol violation and writes nothing', async () => {
    const { ports, calls, state } = countingPorts({ rev: 4, record: { state: 'COMMITTED', operation: op } });
    await expect(runBarrier('ABORT', undefined, ports, { runId: 'r', leaseMs: LEASE_MS })).rejects.toThrow(ProtocolViolationError);
    expect(calls).toEqual({ prepare: 0, commit: 0, abort: 0 });
    expect(state).toEqual({ stored: { rev: 4, record: { state: 'COMMITTED', operation: op } }, landed: [] });
  });

  it('never calls user commit on an aborted barrier: a COMMIT there is a protocol violation and writes nothing', async () => {
    for (const prepareStarted of [true, false]) {
      const { ports, calls, state } = countingPorts({ rev: 3, record: { state: 'ABORTED', prepareStarted, operation: op } });
      await expect(runBarrier('COMMIT', undefined, ports, { runId: 'r', leaseMs: LEASE_MS })).rejects.toThrow(ProtocolViolationError);
      expect(calls).toEqual({ prepare: 0, commit: 0, abort: 0 });
      expect(state.landed).toEqual([]);
      expect(state.stored.rev).toBe(3);
    }
  });

  it('a duplicate COMMIT or ABORT on its own final state acknowledges without calling user code', async () => {
    for (const [type, record] of [
      ['COMMIT', { state: 'COMMITTED', operation: op }],
      ['ABORT', { state: 'ABORTED', prepareStarted: true, operation: op }],
    ] as const) {
      const { ports, calls, state } = countingPorts({ rev: 4, record });
      expect(await runBarrier(type, undefined, ports, { runId: 'r', leaseMs: LEASE_MS })).toEqual({ kind: 'ack', phase: type });
      expect(calls).toEqual({ prepare: 0, commit: 0, abort: 0 });
      expect(state.landed).toEqual([]);
    }
  });

  it('a prepare run whose claim was taken over while it ran writes nothing and leaves the vote to the new owner', async () => {
    const { ports, state } = countingPorts({ rev: 1, record: { state: 'PREPARING', operation: op, claim: { runId: 'r', untilMs: LEASE_MS } } });
    const prepare = ports.prepare;
    // While user prepare runs (paused past its lease), another run takes the claim over.
    ports.prepare = async (operation) => {
      const out = await prepare(operation);
      state.stored = { rev: 2, record: { state: 'PREPARING', operation: op, claim: { runId: 'other', untilMs: 5 * LEASE_MS } } };
      return out;
    };
    const outcome = await runBarrier('PREPARE', op, ports, { runId: 'r', leaseMs: LEASE_MS });
    expect(outcome).toEqual({ kind: 'done', why: 'another prepare run owns the barrier now' });
    expect(state.landed).toEqual([]);
    expect(state.stored.rev).toBe(2);
  });

  it('a rejected prepare effect runs prepare again on fresh data, then votes NO; a rejected commit effect is an error', async () => {
    let attempts = 0;
    const { ports, state } = countingPorts(ABSENT);
    const rejecting: BarrierPorts = {
      ...ports,
      write: async (rev, next, writes) => {
        if (writes.length > 0) {
          attempts++;
          return { kind: 'rejected', reason: 'stock changed' };
        }
        return ports.write(rev, next, writes);
      },
    };
    const outcome = await runBarrier('PREPARE', op, rejecting, { runId: 'r', leaseMs: LEASE_MS });
    expect(outcome).toMatchObject({ kind: 'vote', vote: 'NO' });
    expect((outcome as { reason: string }).reason).toMatch(/conditions failed 3 times: stock changed/);
    expect(attempts).toBe(MAX_PREPARE_ATTEMPTS);
    expect(state.stored.record).toMatchObject({ state: 'PREPARED', vote: 'NO' });
    expect(state.landed).toEqual([]);

    const yes = countingPorts({ rev: 2, record: { state: 'PREPARED', operation: op, vote: 'YES' } });
    await expect(runBarrier('COMMIT', undefined, { ...yes.ports, write: async () => ({ kind: 'rejected', reason: 'no hold' }) }, { runId: 'r', leaseMs: LEASE_MS })).rejects.toThrow(
      EffectRejectedError,
    );
  });

  it('a store whose record keeps changing ends in a bounded error', async () => {
    let rev = 0;
    const ports: BarrierPorts = {
      nowMs: () => 0,
      read: async () => ({ rev: ++rev, record: { state: 'NONE' } }),
      write: async () => ({ kind: 'moved' }),
      prepare: async () => ({ vote: 'YES', writes: [] }),
      commit: async () => [],
      abort: async () => [],
    };
    await expect(runBarrier('ABORT', undefined, ports, { runId: 'r', leaseMs: LEASE_MS, maxSteps: 5 })).rejects.toThrow(/did not settle/);
  });
});
