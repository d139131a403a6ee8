// A deterministic simulation of the whole protocol, in the spirit of TigerBeetle's VOPR: the
// coordinator's rules (transaction.ts), the participants' barrier (barrier.ts) and recovery
// (recovery.ts), driven over a simulated network (drop, duplicate, delay, reorder), a simulated
// clock, crashes and restarts, by one seed. Same seed, same run: a failure names its seed.
//
// What is modelled, and how it maps to the real system:
// - log: the DynamoDB log table (durable). Every write is one conditional write on one record.
// - executions: Step Functions (volatile): Prepare / Decide / Commit|Abort (capped jittered retry,
//   then a 60 s wait, forever) / Finalize, with task tokens that a reply completes.
// - reply handler: the reply Lambda (record, then signal), consuming the reply queue.
// - queues: SQS standard queues: at-least-once, visibility timeout, redelivery after a crash.
// - participants: the SDK runner: the barrier loop step by step, user effects as escrow holds,
//   the in-doubt watch and inquiry (reading the log, presumed abort), a restart scan.
// - sweeper: two overlapping recovery sweepers (src/recovery.ts), claim-then-start.
// - crashes: of a participant, of the coordinator (executions fail), of the whole local stack
//   (executions vanish and every queue is emptied: kill -9 of `npm start`).
// No I/O, no clock, no Math.random: everything comes from the seed.
import {
  ABSENT,
  decide as barrierDecide,
  describe as describeBarrier,
  NO_PROGRESS,
  type BarrierRecord,
  type BarrierMessageType,
  type Progress,
  type StoredBarrier,
} from './barrier';
import { decideAcquire, decideRelease, decideRenew, emptyLock, backoffMs as lockBackoffMs, type LockItem, type OwnerVerdict } from './locks';
import type { Vote } from './messages';
import { createRandom, type Random } from './random';
import { backoffMs, decisionOf, isStale, recoveryAction, recoveryExecutionName, resumeInput, type ExecutionState } from './recovery';
import {
  PHASE_STATUS,
  STATUS_PHASE,
  awaitingVote,
  executionInput,
  newTransaction,
  phaseTwoRecipients,
  phaseTwoResult,
  signalAfterAck,
  signalAfterVote,
  tally,
  type ExecutionInput,
  type Outcome,
  type Phase,
  type PhaseTwoResult,
  type PrepareResult,
  type TxRecord,
} from './transaction';

/** Deliberate protocol bugs: each must make the simulation report a violation. */
export const MUTATIONS = ['commitOnMissingVote', 'skipBarrier', 'unconditionalDecide', 'leaseFreesPreparedLock'] as const;
export type Mutation = 'none' | (typeof MUTATIONS)[number];

export interface SimOptions {
  seed: number;
  mutation?: Mutation;
  /** Keep a trace of every event (slow; for replaying one failing seed). */
  trace?: boolean;
}

export interface SimStats {
  transactions: number;
  participants: number;
  committed: number;
  aborted: number;
  events: number;
  messagesSent: number;
  dropped: number;
  duplicated: number;
  participantCrashes: number;
  coordinatorCrashes: number;
  stackCrashes: number;
  recoveries: number;
  inquiries: number;
  healAtMs: number;
  /** The latest a transaction or a participant settled, after the faults healed (0 if before). */
  settledAfterHealMs: number;
}

export interface SimResult {
  seed: number;
  mutation: Mutation;
  violations: string[];
  stats: SimStats;
  trace?: string[];
}

// ---------------------------------------------------------------------------------------------
// Timing of the modelled system (simulated milliseconds)

const T = {
  /** Each step of a Lambda, an execution or a participant takes 1..STEP ms. */
  stepMs: 20,
  staleMs: 3_000,
  sweepEveryMs: 2_000,
  maxPerSweep: 50,
  visibilityMs: 5_000,
  barrierLeaseMs: 10_000,
  inquireAfterMs: 3_000,
  inquiryEveryMs: 1_000,
  inquiryMaxBackoffMs: 20_000,
  /** Phase-two retry: 1 s base, x2, 60 s cap, full jitter, 10 attempts, then a 60 s wait. */
  retryBaseMs: 1_000,
  retryCapMs: 60_000,
  retryAttempts: 10,
  backoffWaitMs: 60_000,
  /** After the faults heal, everything must have settled within this bound. */
  boundAfterHealMs: 240_000,
  /** A lock's lease while prepare runs; a YES vote extends it past the prepare deadline by the grace. */
  lockLeaseMs: 2_000,
  lockGraceMs: 1_000,
  /** How often a lock waiter reads its own transaction's status. */
  statusCheckMs: 300,
} as const;

interface Faults {
  drop: number;
  duplicate: number;
  delayMaxMs: number;
  participantCrashPerSec: number;
  coordinatorCrashPerSec: number;
  stackCrashPerSec: number;
  /** The in-doubt inquiry's read fails (the coordinator's API is down). */
  readFailure: number;
  /** StartExecution fails as the client sees it, though the execution did start (a timeout). */
  ambiguousStart: number;
  /** StartExecution fails outright after the record was written. */
  failedStart: number;
  /** Someone else aborts while the transaction prepares (a lock takeover, the deadlock detector). */
  externalAbort: number;
  noVote: number;
  readOnlyVote: number;
}

// ---------------------------------------------------------------------------------------------
// Scheduler

interface Event {
  at: number;
  seq: number;
  run: () => void;
}

class Scheduler {
  now = 0;
  private seq = 0;
  private readonly heap: Event[] = [];
  events = 0;

  at(at: number, run: () => void): void {
    const ev = { at: Math.max(at, this.now), seq: this.seq++, run };
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (less(h[parent]!, ev)) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = ev;
  }

  after(ms: number, run: () => void): void {
    this.at(this.now + ms, run);
  }

  /** Runs events until `until` or until `stop()` answers true (checked after each event). */
  run(until: number, stop: () => boolean): void {
    const h = this.heap;
    while (h.length > 0) {
      const top = h[0]!;
      if (top.at > until) break;
      const last = h.pop()!;
      if (h.length > 0) {
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          const r = l + 1;
          let m = i;
          let mv = last;
          if (l < h.length && less(h[l]!, mv)) {
            m = l;
            mv = h[l]!;
          }
          if (r < h.length && less(h[r]!, mv)) {
            m = r;
          }
          if (m === i) break;
          h[i] = h[m]!;
          i = m;
        }
        h[i] = last;
      }
      this.now = top.at;
      this.events++;
      top.run();
      if (stop()) return;
    }
    this.now = Math.max(this.now, until);
  }
}

const less = (a: Event, b: Event): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq);

// ---------------------------------------------------------------------------------------------
// Messages and queues

interface PMessage {
  type: BarrierMessageType;
  txId: string;
  participant: string;
  deadlineAt: number;
  attempt: number;
}
type RMessage = { type: 'VOTE'; txId: string; participant: string; vote: Vote } | { type: 'ACK'; txId: string; participant: string; phase: 'COMMIT' | 'ABORT' };

interface QueuedMessage<M> {
  id: number;
  body: M;
  visibleAt: number;
  inFlight: boolean;
}

interface Queue<M> {
  name: string;
  messages: Map<number, QueuedMessage<M>>;
}

// ---------------------------------------------------------------------------------------------
// Participants

interface Effects {
  placed: number;
  consumed: number;
  released: number;
}

interface ParticipantState {
  name: string;
  up: boolean;
  /** Incremented by every crash: work started by an earlier generation stops. */
  generation: number;
  barrier: Map<string, { stored: StoredBarrier; writtenAt: number }>;
  free: number;
  held: number;
  done: number;
  holds: Map<string, number>;
  effects: Map<string, Effects>;
  /** The vote each PREPARED write recorded, per transaction. */
  votes: Map<string, Vote>;
  watch: Map<string, { askAt: number; asks: number }>;
  queue: Queue<PMessage>;
  initial: number;
}

// ---------------------------------------------------------------------------------------------
// Executions

interface Execution {
  name: string;
  txId: string;
  input: ExecutionInput;
  alive: boolean;
  finished: boolean;
  /** The task waiting for its callback, if any. */
  waiting?: { token: string; onResult: (output: unknown) => void };
}

interface TxPlan {
  txId: string;
  participants: string[];
  amounts: Record<string, number>;
  /** What each participant's user code votes. */
  votes: Record<string, Vote>;
  /** The resource each participant locks (X) in prepare, when this seed uses locks. */
  resources: Record<string, string>;
  startAt: number;
  prepareSeconds: number;
  commitSeconds: number;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export function simulate(options: SimOptions): SimResult {
  return new World(options).run();
}

class World {
  private readonly rng: Random;
  private readonly net: Random;
  private readonly mutation: Mutation;
  private readonly s = new Scheduler();
  private readonly faults: Faults;
  private readonly healAtMs: number;
  private readonly plans: TxPlan[] = [];
  private readonly log = new Map<string, TxRecord>();
  private readonly decisions = new Map<string, Outcome[]>();
  private readonly executions = new Map<string, Execution>();
  private readonly tokens = new Map<string, Execution>();
  private readonly participants = new Map<string, ParticipantState>();
  private readonly replyQueue: Queue<RMessage> = { name: 'replies', messages: new Map() };
  private coordinatorUp = true;
  private coordinatorGeneration = 0;
  private nextId = 1;
  private readonly violations: string[] = [];
  private readonly trace?: string[];
  private readonly stats: SimStats;
  private readonly settledAt = new Map<string, number>();
  /** The lock table (durable), when this seed's participants lock their resource in prepare. */
  private readonly locks?: Map<string, LockItem>;
  private readonly lockVersions = new Map<string, number>();

  constructor(private readonly options: SimOptions) {
    const root = createRandom(options.seed);
    this.rng = root.fork();
    this.net = root.fork();
    this.mutation = options.mutation ?? 'none';
    if (options.trace) this.trace = [];
    const r = root.fork();
    // Each seed draws its own fault mix, from calm to hostile.
    const level = r.pick([0, 0.5, 1, 1, 2]);
    this.faults = {
      drop: 0.08 * level,
      duplicate: 0.1 * level,
      delayMaxMs: r.pick([50, 500, 3_000]),
      participantCrashPerSec: 0.03 * level,
      coordinatorCrashPerSec: 0.015 * level,
      stackCrashPerSec: 0.008 * level,
      readFailure: 0.2 * level,
      ambiguousStart: 0.05 * level,
      failedStart: 0.03 * level,
      externalAbort: 0.1 * level,
      noVote: r.pick([0, 0.05, 0.15]),
      readOnlyVote: r.pick([0, 0.1]),
    };
    if (r.chance(0.5)) this.locks = new Map();
    const participantCount = r.int(2, 4);
    const txCount = r.int(3, 10);
    this.healAtMs = r.int(5_000, 40_000);
    for (let i = 0; i < participantCount; i++) {
      const name = `p${i}`;
      const initial = 1_000;
      this.participants.set(name, {
        name,
        up: true,
        generation: 0,
        barrier: new Map(),
        free: initial,
        held: 0,
        done: 0,
        holds: new Map(),
        effects: new Map(),
        votes: new Map(),
        watch: new Map(),
        queue: { name, messages: new Map() },
        initial,
      });
    }
    const names = [...this.participants.keys()];
    for (let i = 0; i < txCount; i++) {
      const members = names.filter(() => r.chance(0.8));
      const chosen = members.length > 0 ? members : [r.pick(names)];
      const amounts: Record<string, number> = {};
      const votes: Record<string, Vote> = {};
      const resources: Record<string, string> = {};
      for (const p of chosen) {
        amounts[p] = r.int(1, 20);
        resources[p] = `${p}/r${r.int(0, 1)}`;
        votes[p] = r.chance(this.faults.noVote) ? 'NO' : r.chance(this.faults.readOnlyVote) ? 'READ_ONLY' : 'YES';
      }
      this.plans.push({
        txId: `tx-${String(i).padStart(4, '0')}-${options.seed >>> 0}`,
        participants: chosen,
        amounts,
        votes,
        resources,
        startAt: r.int(0, Math.max(1_000, this.healAtMs)),
        prepareSeconds: r.int(1, 8),
        commitSeconds: r.int(1, 6),
      });
    }
    this.stats = {
      transactions: txCount,
      participants: participantCount,
      committed: 0,
      aborted: 0,
      events: 0,
      messagesSent: 0,
      dropped: 0,
      duplicated: 0,
      participantCrashes: 0,
      coordinatorCrashes: 0,
      stackCrashes: 0,
      recoveries: 0,
      inquiries: 0,
      healAtMs: this.healAtMs,
      settledAfterHealMs: 0,
    };
  }

  private note(line: string): void {
    this.trace?.push(`${String(this.s.now).padStart(7)} ${line}`);
  }

  private violate(message: string): void {
    if (!this.violations.includes(message)) this.violations.push(message);
    this.note(`VIOLATION ${message}`);
  }

  private faulty(): boolean {
    return this.s.now < this.healAtMs;
  }

  private step(): number {
    return this.rng.int(1, T.stepMs);
  }

  run(): SimResult {
    for (const plan of this.plans) this.s.at(plan.startAt, () => this.startTransaction(plan));
    for (const p of this.participants.values()) this.scheduleInquiry(p);
    this.s.at(0, () => this.sweeperLoop(0));
    this.s.at(T.sweepEveryMs / 2, () => this.sweeperLoop(1));
    this.s.at(0, () => this.crashLoop());
    const limit = this.healAtMs + T.boundAfterHealMs;
    // Check for the end once a (simulated) second; everything else is event-driven.
    let settled = false;
    const check = (): void => {
      if (this.s.now >= this.healAtMs && this.allStarted() && this.allSettled()) settled = true;
      else this.s.after(1_000, check);
    };
    this.s.at(this.healAtMs, check);
    this.s.run(limit, () => settled);
    this.stats.events = this.s.events;
    this.checkInvariants(settled);
    return { seed: this.options.seed, mutation: this.mutation, violations: this.violations, stats: this.stats, ...(this.trace ? { trace: this.trace } : {}) };
  }

  // -------------------------------------------------------------------------------------------
  // Network

  private send<M>(queue: Queue<M>, body: M, wake: () => void): void {
    this.stats.messagesSent++;
    const copies = this.faulty() && this.net.chance(this.faults.duplicate) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let i = 0; i < copies; i++) {
      if (this.faulty() && this.net.chance(this.faults.drop)) {
        this.stats.dropped++;
        continue;
      }
      const delay = this.faulty() ? this.net.int(1, this.faults.delayMaxMs) : this.net.int(1, 30);
      const message: QueuedMessage<M> = { id: this.nextId++, body, visibleAt: this.s.now + delay, inFlight: false };
      queue.messages.set(message.id, message);
      this.s.at(message.visibleAt, wake);
    }
  }

  private sendToParticipant(message: PMessage): void {
    const p = this.participants.get(message.participant)!;
    this.note(`send ${message.type} ${message.txId} -> ${p.name}`);
    this.send(p.queue, message, () => this.wakeParticipant(p));
  }

  private sendReply(message: RMessage): void {
    this.note(`send ${message.type} ${message.txId} <- ${message.participant}${message.type === 'VOTE' ? ` ${message.vote}` : ''}`);
    this.send(this.replyQueue, message, () => this.wakeReplies());
  }

  /** Takes every visible message, in random order (standard queues do not keep order). */
  private take<M>(queue: Queue<M>): QueuedMessage<M>[] {
    const visible = [...queue.messages.values()].filter((m) => !m.inFlight && m.visibleAt <= this.s.now);
    for (let i = visible.length - 1; i > 0; i--) {
      const j = this.net.int(0, i);
      [visible[i], visible[j]] = [visible[j]!, visible[i]!];
    }
    for (const m of visible) {
      m.inFlight = true;
      // If the consumer dies, the message is visible again after the visibility timeout.
      m.visibleAt = this.s.now + T.visibilityMs;
    }
    return visible;
  }

  private release<M>(queue: Queue<M>, message: QueuedMessage<M>, retryAfterMs: number | undefined, wake: () => void): void {
    if (retryAfterMs === undefined) {
      queue.messages.delete(message.id);
      return;
    }
    message.inFlight = false;
    message.visibleAt = this.s.now + retryAfterMs;
    this.s.at(message.visibleAt, wake);
  }

  // -------------------------------------------------------------------------------------------
  // The API: create the record, start the execution

  private startTransaction(plan: TxPlan): void {
    if (!this.coordinatorUp) {
      this.s.after(500, () => this.startTransaction(plan));
      return;
    }
    const gen = this.coordinatorGeneration;
    if (!this.log.has(plan.txId)) {
      const record = newTransaction({
        txId: plan.txId,
        request: {
          participants: plan.participants.map((service) => ({ service, operation: { amount: plan.amounts[service] } })),
          timeouts: { prepareSeconds: plan.prepareSeconds, commitSeconds: plan.commitSeconds },
        },
        nowMs: this.s.now,
        requestHash: 'sim',
      });
      this.log.set(plan.txId, record);
      this.note(`create ${plan.txId} [${plan.participants.join(',')}]`);
    }
    this.s.after(this.step(), () => {
      if (gen !== this.coordinatorGeneration) return; // the API crashed between write and start
      const record = this.log.get(plan.txId)!;
      if (record.status !== 'PREPARING') return;
      if (this.faulty() && this.rng.chance(this.faults.failedStart)) {
        this.note(`start of ${plan.txId} failed`);
        this.decideAbortExternally(plan.txId, 'the workflow could not start');
        return;
      }
      this.startExecution(record.executionName ?? record.txId, executionInput(record));
      if (this.faulty() && this.rng.chance(this.faults.ambiguousStart)) {
        // The start happened but its answer was lost: the API aborts, racing the execution.
        this.s.after(this.rng.int(1, plan.prepareSeconds * 1000), () => {
          if (gen === this.coordinatorGeneration) this.decideAbortExternally(plan.txId, 'the workflow could not start (timeout)');
        });
      }
      if (this.faulty() && this.rng.chance(this.faults.externalAbort)) {
        this.s.after(this.rng.int(1, plan.prepareSeconds * 1000), () => {
          if (this.coordinatorUp) this.decideAbortExternally(plan.txId, 'aborted from outside (lock takeover)');
        });
      }
    });
  }

  /**
   * TxLog.decideAbort, then what src/locks/transactions.ts does after it: wake the execution if it
   * waits in Prepare (the conditional write makes the decision; the wake only saves time).
   */
  private decideAbortExternally(txId: string, reason: string): boolean {
    const record = this.log.get(txId);
    if (!record || record.status !== 'PREPARING') return false;
    this.writeDecision(record, { outcome: 'ABORT', status: 'ABORTING', reason });
    if (record.taskPhase === 'PREPARE' && record.taskToken) this.signal(record.taskToken, { outcome: 'ABORT', status: 'ABORTING', reason });
    return true;
  }

  private writeDecision(record: TxRecord, result: PrepareResult): void {
    record.status = result.status;
    record.decision = result.outcome;
    record.decisionReason = result.reason;
    record.decidedAt = iso(this.s.now);
    record.updatedAt = iso(this.s.now);
    const history = this.decisions.get(record.txId) ?? [];
    history.push(result.outcome);
    this.decisions.set(record.txId, history);
    this.note(`decide ${record.txId} ${result.outcome} (${result.reason})`);
  }

  // -------------------------------------------------------------------------------------------
  // Executions (the state machine)

  private startExecution(name: string, input: ExecutionInput): void {
    const existing = this.executions.get(name);
    if (existing) return; // same name: the same execution (or ExecutionAlreadyExists)
    const execution: Execution = { name, txId: input.txId, input, alive: true, finished: false };
    this.executions.set(name, execution);
    this.note(`execution ${name} starts${input.resumeFrom ? ` (recovery; the log says ${input.resumeFrom})` : ''}`);
    // Every execution starts in Prepare, as the state machine does: for a decided record dispatch
    // answers at once with the decision, Decide's condition refuses it, and the route is the log's.
    this.later(execution, () => this.prepare(execution));
  }

  /** Continue `execution` after a step, unless it died meanwhile. */
  private later(execution: Execution, run: () => void, ms: number = this.step()): void {
    this.s.after(ms, () => {
      if (execution.alive && !execution.finished) run();
    });
  }

  /** A waitForTaskToken task: dispatch, then wait for the callback or the timeout. */
  private task(execution: Execution, phase: Phase, timeoutMs: number, onResult: (output: unknown) => void, onTimeout: () => void): void {
    const token = `${execution.name}#${this.nextId++}`;
    execution.waiting = { token, onResult };
    this.tokens.set(token, execution);
    this.later(execution, () => this.dispatch(execution, phase, token));
    this.s.after(timeoutMs, () => {
      if (!execution.alive || execution.finished || execution.waiting?.token !== token) return;
      execution.waiting = undefined;
      this.tokens.delete(token);
      this.note(`execution ${execution.name}: ${phase} timed out`);
      onTimeout();
    });
  }

  /** SendTaskSuccess: completes the task if the token is still the current one of a live execution. */
  private signal(token: string, output: unknown): void {
    const execution = this.tokens.get(token);
    if (!execution || !execution.alive || execution.finished || execution.waiting?.token !== token) return;
    const { onResult } = execution.waiting;
    execution.waiting = undefined;
    this.tokens.delete(token);
    this.later(execution, () => onResult(output));
  }

  /** Coordinator.dispatch. */
  private dispatch(execution: Execution, phase: Phase, token: string): void {
    const record = this.log.get(execution.txId);
    if (!record) {
      this.violate(`${execution.txId}: dispatch found no record`);
      return;
    }
    if (record.status !== PHASE_STATUS[phase]) {
      this.signal(token, this.resultFor(phase, record));
      return;
    }
    record.taskToken = token;
    record.taskPhase = phase;
    record.updatedAt = iso(this.s.now);
    const attemptsKey = `${phase.toLowerCase()}Attempts` as 'prepareAttempts' | 'commitAttempts' | 'abortAttempts';
    const attempt = (record[attemptsKey] ?? 0) + 1;
    record[attemptsKey] = attempt;
    const gen = this.coordinatorGeneration;
    // The sends are a separate step: the dispatch Lambda may die after its write.
    this.s.after(this.step(), () => {
      if (gen !== this.coordinatorGeneration) return;
      if (phase === 'PREPARE') {
        const result = tally(record);
        if (result) {
          this.signal(token, result);
          return;
        }
        for (const p of awaitingVote(record)) {
          this.sendToParticipant({ type: 'PREPARE', txId: record.txId, participant: p.service, deadlineAt: record.prepareDeadlineAt, attempt });
        }
        return;
      }
      const deadlineAt = this.s.now + record.timeouts.commitSeconds * 1000;
      for (const p of phaseTwoRecipients(record, phase)) this.sendToParticipant({ type: phase, txId: record.txId, participant: p, deadlineAt, attempt });
      const done = signalAfterAck(record, this.s.now, 30);
      if (done) this.signal(token, done);
    });
  }

  private resultFor(phase: Phase, record: TxRecord): unknown {
    const committing = record.status === 'COMMITTING' || record.status === 'COMMITTED';
    if (phase === 'PREPARE') return committing ? { outcome: 'COMMIT', status: 'COMMITTING', reason: 'decided elsewhere' } : { outcome: 'ABORT', status: 'ABORTING', reason: 'decided elsewhere' };
    return phaseTwoResult(committing ? 'COMMITTING' : 'ABORTING', this.s.now, 30);
  }

  private prepare(execution: Execution): void {
    this.task(
      execution,
      'PREPARE',
      execution.input.timeouts.prepareSeconds * 1000,
      (output) => this.decide(execution, output as PrepareResult),
      () => {
        const record = this.log.get(execution.txId)!;
        const anyNo = Object.values(record.votes).some((v) => v.vote === 'NO');
        // The mutation: a prepare that times out with no NO recorded commits anyway.
        const result: PrepareResult =
          this.mutation === 'commitOnMissingVote' && !anyNo
            ? { outcome: 'COMMIT', status: 'COMMITTING', reason: 'prepare timed out (mutated: commit)' }
            : { outcome: 'ABORT', status: 'ABORTING', reason: 'prepare did not complete: States.Timeout' };
        this.decide(execution, result);
      },
    );
  }

  /** Decide: the conditional write from PREPARING; a loser reads the winner's decision. */
  private decide(execution: Execution, result: PrepareResult): void {
    const record = this.log.get(execution.txId)!;
    if (record.status === 'PREPARING' || this.mutation === 'unconditionalDecide') {
      this.writeDecision(record, result);
      // The Decide step also removes the token: replies to Prepare no longer wake anything.
      delete record.taskToken;
      delete record.taskPhase;
      this.later(execution, () => this.phaseTwo(execution, result.outcome, 0));
      return;
    }
    this.later(execution, () => this.routeByStatus(execution));
  }

  private routeByStatus(execution: Execution): void {
    const status = this.log.get(execution.txId)!.status;
    if (status === 'COMMITTING') this.phaseTwo(execution, 'COMMIT', 0);
    else if (status === 'ABORTING') this.phaseTwo(execution, 'ABORT', 0);
    else if (status === 'PREPARING') this.violate(`${execution.txId}: ReadDecision found PREPARING after a failed Decide`);
    else this.finishExecution(execution);
  }

  private phaseTwo(execution: Execution, phase: 'COMMIT' | 'ABORT', retry: number): void {
    this.task(
      execution,
      phase,
      execution.input.timeouts.commitSeconds * 1000,
      (output) => this.finalize(execution, output as PhaseTwoResult),
      () => {
        // Phase two never gives up: capped jittered retries, then a 60 s wait, then again.
        if (retry < T.retryAttempts) {
          this.later(execution, () => this.phaseTwo(execution, phase, retry + 1), backoffMs(retry, T.retryBaseMs, T.retryCapMs, this.rng.next()) + 1);
        } else {
          this.later(execution, () => this.phaseTwo(execution, phase, 0), T.backoffWaitMs);
        }
      },
    );
  }

  private finalize(execution: Execution, result: PhaseTwoResult): void {
    const record = this.log.get(execution.txId)!;
    if (record.status === result.from) {
      record.status = result.final;
      record.finishedAt = iso(this.s.now);
      record.updatedAt = iso(this.s.now);
      delete record.openPk;
      delete record.taskToken;
      delete record.taskPhase;
      this.note(`finalize ${record.txId} ${result.final}`);
    }
    this.finishExecution(execution);
  }

  private finishExecution(execution: Execution): void {
    execution.finished = true;
    execution.waiting = undefined;
  }

  // -------------------------------------------------------------------------------------------
  // The reply handler (reply Lambda): record, then signal, then delete the message

  private wakeReplies(): void {
    if (!this.coordinatorUp) return;
    for (const message of this.take(this.replyQueue)) this.handleReply(message);
  }

  private handleReply(message: QueuedMessage<RMessage>): void {
    const gen = this.coordinatorGeneration;
    const alive = () => gen === this.coordinatorGeneration;
    const body = message.body;
    this.s.after(this.step(), () => {
      if (!alive()) return;
      const record = this.log.get(body.txId);
      let then: () => void;
      if (body.type === 'VOTE') {
        const applied = record !== undefined && record.status === 'PREPARING' && record.votes[body.participant] === undefined;
        if (applied) {
          record.votes[body.participant] = { vote: body.vote, at: iso(this.s.now) };
          record.updatedAt = iso(this.s.now);
        }
        then = () => {
          if (!record) {
            if (body.vote === 'YES') this.sendToParticipant({ type: 'ABORT', txId: body.txId, participant: body.participant, deadlineAt: this.s.now, attempt: 1 });
            return;
          }
          if (record.status === 'PREPARING') {
            const signal = applied ? signalAfterVote(record, body.participant) : tally(record);
            if (signal && record.taskToken && record.taskPhase === 'PREPARE') this.signal(record.taskToken, signal);
            return;
          }
          const aborting = record.status === 'ABORTING' || record.status === 'ABORTED';
          if (aborting && body.vote === 'YES' && record.votes[body.participant] === undefined) {
            this.sendToParticipant({ type: 'ABORT', txId: record.txId, participant: body.participant, deadlineAt: this.s.now, attempt: 1 });
          }
        };
      } else {
        const phaseStatus = PHASE_STATUS[body.phase];
        const applied = record !== undefined && record.status === phaseStatus && record.acks[body.participant] === undefined;
        if (applied) {
          record.acks[body.participant] = { phase: body.phase, at: iso(this.s.now) };
          record.updatedAt = iso(this.s.now);
        }
        then = () => {
          if (!record || (!applied && record.acks[body.participant] === undefined)) return;
          const done = signalAfterAck(record, this.s.now, 30);
          if (done && record.taskToken && record.taskPhase === body.phase) this.signal(record.taskToken, done);
        };
      }
      this.s.after(this.step(), () => {
        if (!alive()) return;
        then();
        this.release(this.replyQueue, message, undefined, () => this.wakeReplies());
      });
    });
  }

  // -------------------------------------------------------------------------------------------
  // Participants: the SDK runner over the barrier

  private wakeParticipant(p: ParticipantState): void {
    if (!p.up) return;
    for (const message of p.queue.messages.size > 0 ? this.take(p.queue) : []) {
      const gen = p.generation;
      this.deliver(p, message.body, (retryAfterMs) => {
        if (gen === p.generation) this.release(p.queue, message, retryAfterMs, () => this.wakeParticipant(p));
      });
    }
  }

  /** One delivery through the barrier (or around it, under the skipBarrier mutation). */
  private deliver(p: ParticipantState, message: PMessage, finish: (retryAfterMs?: number) => void): void {
    const gen = p.generation;
    const alive = () => gen === p.generation && p.up;
    const plan = this.plans.find((x) => x.txId === message.txId)!;
    const operation = { amount: plan.amounts[p.name] };
    const reply = (outcome: { kind: 'vote'; vote: Vote } | { kind: 'ack'; phase: 'COMMIT' | 'ABORT' }) => {
      // A YES voter's lock must outlive the undecided window (the runner's cover after the vote).
      if (outcome.kind === 'vote' && outcome.vote === 'YES') this.renewLock(p, plan, Math.max(T.lockLeaseMs, message.deadlineAt - this.s.now + T.lockGraceMs));
      if (outcome.kind === 'vote') this.sendReply({ type: 'VOTE', txId: message.txId, participant: p.name, vote: outcome.vote });
      else this.sendReply({ type: 'ACK', txId: message.txId, participant: p.name, phase: outcome.phase });
      this.noteWatch(p, message, outcome);
    };

    if (this.mutation === 'skipBarrier') {
      this.s.after(this.step(), () => {
        if (!alive()) return;
        if (message.type === 'PREPARE') {
          this.acquireLock(p, plan, message.deadlineAt, alive, (locked) => {
            const vote = locked ? this.userPrepare(p, message.txId, plan) : 'NO';
            p.votes.set(message.txId, vote);
            reply({ kind: 'vote', vote });
            finish();
          });
          return;
        }
        if (message.type === 'COMMIT') {
          this.userCommit(p, message.txId, plan);
          reply({ kind: 'ack', phase: 'COMMIT' });
        } else {
          this.userAbort(p, message.txId);
          reply({ kind: 'ack', phase: 'ABORT' });
        }
        this.releaseLock(p, plan);
        finish();
      });
      return;
    }

    const runId = `run-${this.nextId++}`;
    // As runBarrier: a PREPARE starts from "no record" without reading.
    let stored = message.type === 'PREPARE' ? ABSENT : this.readBarrier(p, message.txId);
    let progress: Progress = NO_PROGRESS;
    let steps = 0;
    const next = (): void => {
      this.s.after(this.step(), () => {
        if (!alive()) return;
        if (++steps > 32) {
          this.violate(`${p.name}/${message.txId}: barrier did not settle in 32 steps`);
          finish();
          return;
        }
        const step = barrierDecide(stored.record, message.type, operation, progress, { nowMs: this.s.now, runId, leaseMs: T.barrierLeaseMs });
        switch (step.kind) {
          case 'write':
            stored = this.writeBarrier(p, message.txId, stored.rev, step.next) ? { rev: stored.rev + 1, record: step.next } : this.readBarrier(p, message.txId);
            next();
            return;
          case 'prepare': {
            // User code takes a while, sometimes long (an ABORT may overtake it meanwhile).
            const ms = this.rng.chance(0.1) ? this.rng.int(100, 3_000) : this.step();
            this.s.after(ms, () => {
              if (!alive()) return;
              this.acquireLock(p, plan, message.deadlineAt, alive, (locked) => {
                progress = { ...progress, prepared: { vote: locked ? this.userPrepare(p, message.txId, plan) : 'NO' } };
                next();
              });
            });
            return;
          }
          case 'commit':
            this.userCommit(p, message.txId, plan);
            this.releaseLock(p, plan);
            progress = { ...progress, committed: true };
            next();
            return;
          case 'abort':
            this.userAbort(p, message.txId);
            this.releaseLock(p, plan);
            progress = { ...progress, compensated: true };
            next();
            return;
          case 'busy':
            finish(Math.min(T.visibilityMs, Math.max(1, step.retryAfterMs)));
            return;
          case 'violation':
            this.violate(`${p.name}/${message.txId}: ${step.reason}`);
            finish();
            return;
          case 'vote':
          case 'ack':
            reply(step);
            finish();
            return;
          case 'done':
            finish();
            return;
        }
      });
    };
    next();
  }

  private readBarrier(p: ParticipantState, txId: string): StoredBarrier {
    return p.barrier.get(txId)?.stored ?? { rev: 0, record: { state: 'NONE' } };
  }

  private writeBarrier(p: ParticipantState, txId: string, expectedRev: number, next: BarrierRecord): boolean {
    const current = p.barrier.get(txId)?.stored.rev ?? 0;
    if (current !== expectedRev) return false;
    p.barrier.set(txId, { stored: { rev: expectedRev + 1, record: next }, writtenAt: this.s.now });
    if (next.state === 'PREPARED') p.votes.set(txId, next.vote);
    this.note(`${p.name}/${txId} barrier ${describeBarrier(next)}`);
    return true;
  }

  private effects(p: ParticipantState, txId: string): Effects {
    let e = p.effects.get(txId);
    if (!e) {
      e = { placed: 0, consumed: 0, released: 0 };
      p.effects.set(txId, e);
    }
    return e;
  }

  /** The demo's escrow: a hold keyed by txId, placed once (a repeat finds it and does nothing). */
  private userPrepare(p: ParticipantState, txId: string, plan: TxPlan): Vote {
    const vote = plan.votes[p.name]!;
    if (vote !== 'YES') return vote;
    if (p.holds.has(txId)) return 'YES';
    const amount = plan.amounts[p.name]!;
    if (p.free < amount) return 'NO';
    p.free -= amount;
    p.held += amount;
    p.holds.set(txId, amount);
    this.effects(p, txId).placed++;
    return 'YES';
  }

  private userCommit(p: ParticipantState, txId: string, plan: TxPlan): void {
    const amount = p.holds.get(txId);
    if (amount === undefined) return;
    // Isolation: an effect lands only while its transaction holds the lock on the resource.
    if (this.locks) {
      const resource = plan.resources[p.name]!;
      const owners = Object.keys(this.locks.get(resource)?.owners ?? {});
      if (!owners.includes(`tx#${txId}`)) this.violate(`${txId}@${p.name}: committed on ${resource} without holding its lock (held by ${owners.join(', ') || 'nobody'})`);
    }
    p.held -= amount;
    p.done += amount;
    p.holds.delete(txId);
    this.effects(p, txId).consumed++;
  }

  private userAbort(p: ParticipantState, txId: string): void {
    const amount = p.holds.get(txId);
    if (amount === undefined) return;
    p.held -= amount;
    p.free += amount;
    p.holds.delete(txId);
    this.effects(p, txId).released++;
  }

  // -------------------------------------------------------------------------------------------
  // Locks (src/locks/service.ts over src/core/locks.ts), when this seed uses them

  private lockItem(resource: string): LockItem {
    return this.locks!.get(resource) ?? emptyLock(resource);
  }

  private putLock(item: LockItem): void {
    const version = (this.lockVersions.get(item.resource) ?? 0) + 1;
    this.lockVersions.set(item.resource, version);
    this.locks!.set(item.resource, { ...item, version });
  }

  /** LockService.acquire: X on the participant's resource, waiting up to the prepare deadline. */
  private acquireLock(p: ParticipantState, plan: TxPlan, waitUntilMs: number, alive: () => boolean, then: (locked: boolean) => void): void {
    if (!this.locks) return then(true);
    const resource = plan.resources[p.name]!;
    const owner = { kind: 'tx' as const, id: plan.txId };
    let attempt = 0;
    const round = (): void => {
      if (!alive()) return;
      const verdicts = new Map<string, OwnerVerdict>();
      for (let i = 0; i < 10; i++) {
        const decision = decideAcquire(this.lockItem(resource), { owner, mode: 'X', scope: p.name, leaseMs: T.lockLeaseMs, waitUntilMs, nowMs: this.s.now }, verdicts);
        if (decision.kind === 'granted') {
          this.putLock(decision.next);
          return then(true);
        }
        if (decision.kind === 'check') {
          for (const key of decision.owners) verdicts.set(key, this.judge(key.slice('tx#'.length), resource));
          continue;
        }
        if (decision.next) this.putLock(decision.next);
        break;
      }
      // A waiter stops when its own transaction was decided, or at its deadline: it votes NO.
      if (this.log.get(plan.txId)?.status !== 'PREPARING' || this.s.now >= waitUntilMs) return then(false);
      this.s.after(Math.min(T.statusCheckMs, lockBackoffMs(attempt++, this.rng.next())), round);
    };
    round();
  }

  /** LockService.judge: an expired owner that may still commit keeps its lock; PREPARING is aborted first. */
  private judge(txId: string, resource: string): OwnerVerdict {
    // The mutation: an expired lease frees the lock whatever its owner's state.
    if (this.mutation === 'leaseFreesPreparedLock') return 'removable';
    if (this.log.get(txId)?.status === 'PREPARING') this.decideAbortExternally(txId, `its lock on ${resource} expired while it was preparing`);
    const status = this.log.get(txId)?.status;
    return status === 'COMMITTING' || status === 'PREPARING' ? 'protected' : 'removable';
  }

  private renewLock(p: ParticipantState, plan: TxPlan, leaseMs: number): void {
    if (!this.locks) return;
    const decision = decideRenew(this.lockItem(plan.resources[p.name]!), { kind: 'tx', id: plan.txId }, leaseMs, this.s.now);
    if (decision.kind === 'renewed') this.putLock(decision.next);
  }

  private releaseLock(p: ParticipantState, plan: TxPlan): void {
    if (!this.locks) return;
    const next = decideRelease(this.lockItem(plan.resources[p.name]!), { kind: 'tx', id: plan.txId }, p.name);
    if (next) this.putLock(next);
  }

  // -------------------------------------------------------------------------------------------
  // In-doubt inquiry (src/participant/inquiry.ts)

  private noteWatch(p: ParticipantState, message: PMessage, outcome: { kind: 'vote'; vote: Vote } | { kind: 'ack' }): void {
    if (message.type === 'PREPARE' && outcome.kind === 'vote' && outcome.vote === 'YES') {
      if (!p.watch.has(message.txId)) p.watch.set(message.txId, { askAt: Math.max(message.deadlineAt, this.s.now) + T.inquireAfterMs, asks: 0 });
    } else if (outcome.kind === 'ack' || (outcome.kind === 'vote' && outcome.vote === 'NO')) {
      p.watch.delete(message.txId);
    }
  }

  private scheduleInquiry(p: ParticipantState): void {
    const gen = p.generation;
    this.s.after(T.inquiryEveryMs, () => {
      if (gen !== p.generation || !p.up) return;
      this.inquire(p);
      this.scheduleInquiry(p);
    });
  }

  private inquire(p: ParticipantState): void {
    const due = [...p.watch.entries()].filter(([, w]) => w.askAt <= this.s.now).slice(0, 16);
    for (const [txId, w] of due) {
      this.stats.inquiries++;
      const postpone = () => {
        w.asks++;
        w.askAt = this.s.now + 1_000 + backoffMs(w.asks, 1_000, T.inquiryMaxBackoffMs, this.rng.next());
      };
      if (this.faulty() && this.rng.chance(this.faults.readFailure)) {
        postpone();
        continue;
      }
      const answer = decisionOf(this.log.get(txId));
      this.note(`${p.name} asks about ${txId}: ${answer}`);
      if (answer === 'PENDING') {
        postpone();
        continue;
      }
      // The answer goes through the barrier as if COMMIT/ABORT had arrived; its ACK ends the watch.
      postpone();
      this.deliver(p, { type: answer, txId, participant: p.name, deadlineAt: this.s.now, attempt: 1 }, () => undefined);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Recovery sweepers (src/recovery.ts)

  private sweeperLoop(instance: number): void {
    if (this.coordinatorUp) this.sweep(instance);
    this.s.after(T.sweepEveryMs, () => this.sweeperLoop(instance));
  }

  private executionState(name: string): ExecutionState {
    const e = this.executions.get(name);
    if (!e) return 'MISSING';
    if (e.finished) return 'SUCCEEDED';
    return e.alive ? 'RUNNING' : 'FAILED';
  }

  private sweep(instance: number): void {
    const gen = this.coordinatorGeneration;
    const candidates = [...this.log.values()]
      .filter((r) => r.openPk !== undefined && isStale(r, this.s.now, T.staleMs))
      .sort((a, b) => (a.updatedAt < b.updatedAt ? -1 : a.updatedAt > b.updatedAt ? 1 : 0))
      .slice(0, T.maxPerSweep)
      .map((r) => r.txId);
    const one = (i: number): void => {
      if (i >= candidates.length) return;
      this.s.after(this.step(), () => {
        if (gen !== this.coordinatorGeneration) return;
        this.recoverOne(candidates[i]!, gen, instance, () => one(i + 1));
      });
    };
    one(0);
  }

  private recoverOne(txId: string, gen: number, instance: number, done: () => void): void {
    const alive = () => gen === this.coordinatorGeneration;
    const record = this.log.get(txId)!;
    if (record.openPk === undefined || !isStale(record, this.s.now, T.staleMs)) return done();
    const seen = { executionName: record.executionName ?? txId, recoveries: record.recoveries ?? 0 };
    const state = this.executionState(seen.executionName);
    const action = recoveryAction(record, state, this.s.now);
    if (action.kind === 'none') return done();
    // Each step reads what the earlier ones left: another sweeper may run between them.
    this.s.after(this.step(), () => {
      if (!alive()) return;
      if (action.kind === 'abort') this.decideAbortExternally(txId, action.reason);
      this.s.after(this.step(), () => {
        if (!alive()) return;
        const now = this.log.get(txId)!;
        const claimable = now.openPk !== undefined && (now.executionName ?? txId) === seen.executionName && (now.recoveries ?? 0) === seen.recoveries;
        if (!claimable) return done();
        const name = recoveryExecutionName(txId, seen.recoveries + 1);
        now.executionName = name;
        now.recoveries = seen.recoveries + 1;
        now.updatedAt = iso(this.s.now);
        this.stats.recoveries++;
        this.note(`sweeper ${instance} recovers ${txId} (${state}) as ${name}`);
        this.s.after(this.step(), () => {
          if (!alive()) return; // claimed, not started: the next sweep finds it MISSING
          const from: Phase = now.status === 'COMMITTED' || now.status === 'ABORTED' ? 'ABORT' : STATUS_PHASE[now.status];
          if (now.openPk !== undefined) this.startExecution(name, resumeInput(now, from, this.s.now));
          done();
        });
      });
    });
  }

  // -------------------------------------------------------------------------------------------
  // Crashes

  private crashLoop(): void {
    if (!this.faulty()) {
      this.restartEverything();
      return;
    }
    const f = this.faults;
    if (this.rng.chance(f.stackCrashPerSec)) this.crashStack();
    else if (this.rng.chance(f.coordinatorCrashPerSec)) this.crashCoordinator(this.rng.int(200, 5_000));
    for (const p of this.participants.values()) {
      if (p.up && this.rng.chance(f.participantCrashPerSec)) this.crashParticipant(p, this.rng.int(100, 8_000));
    }
    this.s.after(1_000, () => this.crashLoop());
  }

  private crashCoordinator(downMs: number): void {
    if (!this.coordinatorUp) return;
    this.stats.coordinatorCrashes++;
    this.note('COORDINATOR CRASH');
    this.coordinatorUp = false;
    this.coordinatorGeneration++;
    for (const e of this.executions.values()) {
      if (!e.finished) e.alive = false;
    }
    this.abandonInFlight(this.replyQueue, () => this.wakeReplies());
    this.s.after(downMs, () => this.restartCoordinator());
  }

  private restartCoordinator(): void {
    if (this.coordinatorUp) return;
    this.coordinatorUp = true;
    this.note('coordinator restarts');
    this.wakeReplies();
  }

  /** kill -9 of the embedded stack: executions vanish, queues are emptied, every service restarts. */
  private crashStack(): void {
    this.stats.stackCrashes++;
    this.note('STACK CRASH');
    this.crashCoordinator(this.rng.int(1_000, 6_000));
    this.executions.clear();
    this.tokens.clear();
    this.replyQueue.messages.clear();
    for (const p of this.participants.values()) {
      p.queue.messages.clear();
      if (p.up) this.crashParticipant(p, this.rng.int(1_000, 6_000));
    }
  }

  private crashParticipant(p: ParticipantState, downMs: number): void {
    this.stats.participantCrashes++;
    this.note(`${p.name} CRASH`);
    p.up = false;
    p.generation++;
    p.watch.clear();
    this.abandonInFlight(p.queue, () => this.wakeParticipant(p));
    this.s.after(downMs, () => this.restartParticipant(p));
  }

  private restartParticipant(p: ParticipantState): void {
    if (p.up) return;
    p.up = true;
    p.generation++;
    // The restart scan (BarrierStore.scanUnsettled): what a crash may have left half done.
    for (const [txId, { stored, writtenAt }] of p.barrier) {
      const r = stored.record;
      if ((r.state === 'PREPARED' && r.vote === 'YES') || r.state === 'PREPARING') {
        // Undecided here: ask (a PREPARING run died; its PREPARE may never come back).
        p.watch.set(txId, { askAt: writtenAt + T.inquireAfterMs, asks: 0 });
      } else if (r.state === 'ABORTED' && r.prepareStarted) {
        // The user's abort may not have run after the ABORTED write: run it again (it is idempotent).
        this.deliver(p, { type: 'ABORT', txId, participant: p.name, deadlineAt: this.s.now, attempt: 1 }, () => undefined);
      } else if (r.state === 'PREPARED') {
        // A NO or READ_ONLY vote's cleanup may not have run: the barrier re-runs it on a PREPARE.
        this.deliver(p, { type: 'PREPARE', txId, participant: p.name, deadlineAt: this.s.now, attempt: 1 }, () => undefined);
      }
    }
    this.note(`${p.name} restarts (watching ${p.watch.size})`);
    this.scheduleInquiry(p);
    this.wakeParticipant(p);
  }

  private restartEverything(): void {
    this.restartCoordinator();
    for (const p of this.participants.values()) this.restartParticipant(p);
  }

  private abandonInFlight<M>(queue: Queue<M>, wake: () => void): void {
    for (const m of queue.messages.values()) {
      if (!m.inFlight) continue;
      m.inFlight = false;
      this.s.at(m.visibleAt, wake);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Invariants

  private allStarted(): boolean {
    return this.plans.every((p) => this.log.has(p.txId));
  }

  /** Every transaction final, every participant's barrier final and no hold left. */
  private allSettled(): boolean {
    let all = true;
    for (const plan of this.plans) {
      const record = this.log.get(plan.txId);
      const final = record !== undefined && (record.status === 'COMMITTED' || record.status === 'ABORTED');
      const participantsDone = plan.participants.every((name) => {
        const p = this.participants.get(name)!;
        const b = p.barrier.get(plan.txId)?.stored.record;
        const open = b !== undefined && (b.state === 'PREPARING' || (b.state === 'PREPARED' && b.vote === 'YES'));
        return !open && !p.holds.has(plan.txId);
      });
      if (final && participantsDone) {
        if (!this.settledAt.has(plan.txId)) this.settledAt.set(plan.txId, this.s.now);
      } else {
        all = false;
      }
    }
    return all;
  }

  private checkInvariants(settled: boolean): void {
    for (const plan of this.plans) {
      const record = this.log.get(plan.txId);
      const history = this.decisions.get(plan.txId) ?? [];
      // One decision: every decision write agrees, and the record still says it.
      if (new Set(history).size > 1) this.violate(`${plan.txId}: decision changed: ${history.join(' -> ')}`);
      if (record?.decision !== undefined && history.length > 0 && record.decision !== history[0]) {
        this.violate(`${plan.txId}: the record says ${record.decision}, the first decision was ${history[0]}`);
      }
      const outcome = history[0];
      if (outcome === 'COMMIT') {
        // Validity: COMMIT only if every participant voted YES or READ_ONLY, as recorded and as cast.
        for (const name of plan.participants) {
          const logged = record?.votes[name]?.vote;
          const cast = this.participants.get(name)!.votes.get(plan.txId);
          if (logged === undefined || logged === 'NO') this.violate(`${plan.txId}: committed without a YES from ${name} (log: ${logged ?? 'none'})`);
          if (cast !== undefined && cast !== logged && this.mutation !== 'skipBarrier') this.violate(`${plan.txId}: ${name} voted ${cast}, the log says ${logged ?? 'none'}`);
        }
      }
      // Atomicity and exactly-once effects, participant by participant.
      for (const name of plan.participants) {
        const p = this.participants.get(name)!;
        const e = p.effects.get(plan.txId) ?? { placed: 0, consumed: 0, released: 0 };
        if (e.placed > 1 || e.consumed > 1 || e.released > 1) this.violate(`${plan.txId}@${name}: effect applied more than once (${JSON.stringify(e)})`);
        if (e.consumed > 0 && e.released > 0) this.violate(`${plan.txId}@${name}: both committed and released`);
        if (e.consumed > 0 && outcome !== 'COMMIT') this.violate(`${plan.txId}@${name}: committed an effect of a transaction decided ${outcome ?? 'never'}`);
        if (settled && outcome === 'COMMIT' && p.votes.get(plan.txId) === 'YES' && plan.votes[name] === 'YES' && e.consumed !== 1) {
          this.violate(`${plan.txId}@${name}: voted YES, the transaction committed, the effect was not applied`);
        }
        if (settled && outcome === 'COMMIT' && p.votes.get(plan.txId) === 'NO') this.violate(`${plan.txId}@${name}: voted NO, yet the transaction committed`);
      }
    }
    // Conservation: nothing created or lost; once settled, nothing held.
    for (const p of this.participants.values()) {
      if (p.free + p.held + p.done !== p.initial) this.violate(`${p.name}: free+held+done = ${p.free + p.held + p.done}, expected ${p.initial}`);
      const heldSum = [...p.holds.values()].reduce((a, b) => a + b, 0);
      if (heldSum !== p.held) this.violate(`${p.name}: held ${p.held} but holds sum to ${heldSum}`);
      if (p.free < 0) this.violate(`${p.name}: free went negative (${p.free})`);
      if (settled) {
        if (p.holds.size > 0) this.violate(`${p.name}: holds left after every transaction ended: ${[...p.holds.keys()].join(', ')}`);
        const expectedDone = this.plans
          .filter((plan) => this.decisions.get(plan.txId)?.[0] === 'COMMIT' && plan.participants.includes(p.name) && p.votes.get(plan.txId) === 'YES')
          .reduce((sum, plan) => sum + plan.amounts[p.name]!, 0);
        if (p.done !== expectedDone) this.violate(`${p.name}: done ${p.done}, committed transactions add up to ${expectedDone}`);
      }
    }
    // Termination: after the faults heal, everything ends within the bound.
    if (!settled) {
      const open = this.plans.filter((plan) => !this.settledAt.has(plan.txId)).map((plan) => `${plan.txId}(${this.log.get(plan.txId)?.status ?? 'no record'})`);
      this.violate(`not settled ${T.boundAfterHealMs} ms after the faults healed: ${open.join(', ')}`);
    }
    for (const record of this.log.values()) {
      if (record.status === 'COMMITTED') this.stats.committed++;
      if (record.status === 'ABORTED') this.stats.aborted++;
    }
    for (const at of this.settledAt.values()) this.stats.settledAfterHealMs = Math.max(this.stats.settledAfterHealMs, at - this.healAtMs);
  }
}

export interface SeedsOptions {
  from?: number;
  count: number;
  mutation?: Mutation;
  /** Stop at the first seed with a violation (default true). */
  stopAtFirst?: boolean;
}

export interface SeedsResult {
  mutation: Mutation;
  seedsRun: number;
  failures: { seed: number; violations: string[] }[];
  /** The first seed that failed, if any (its index is seedsRun - 1 when stopAtFirst). */
  firstFailingSeed?: number;
  events: number;
  transactions: number;
  committed: number;
  aborted: number;
  recoveries: number;
  inquiries: number;
  crashes: number;
  /** The longest any run took to settle after its faults healed. */
  maxSettledAfterHealMs: number;
}

/** Run seeds `from .. from+count-1`. */
export function runSeeds(options: SeedsOptions): SeedsResult {
  const from = options.from ?? 1;
  const stopAtFirst = options.stopAtFirst ?? true;
  const result: SeedsResult = {
    mutation: options.mutation ?? 'none',
    seedsRun: 0,
    failures: [],
    events: 0,
    transactions: 0,
    committed: 0,
    aborted: 0,
    recoveries: 0,
    inquiries: 0,
    crashes: 0,
    maxSettledAfterHealMs: 0,
  };
  for (let seed = from; seed < from + options.count; seed++) {
    const run = simulate({ seed, ...(options.mutation ? { mutation: options.mutation } : {}) });
    result.seedsRun++;
    result.events += run.stats.events;
    result.transactions += run.stats.transactions;
    result.committed += run.stats.committed;
    result.aborted += run.stats.aborted;
    result.recoveries += run.stats.recoveries;
    result.inquiries += run.stats.inquiries;
    result.crashes += run.stats.participantCrashes + run.stats.coordinatorCrashes + run.stats.stackCrashes;
    result.maxSettledAfterHealMs = Math.max(result.maxSettledAfterHealMs, run.stats.settledAfterHealMs);
    if (run.violations.length > 0) {
      result.failures.push({ seed, violations: run.violations });
      result.firstFailingSeed ??= seed;
      if (stopAtFirst) break;
    }
  }
  return result;
}
