// One simulated world: the real coordinator (start, replies, abort), the group supervisors' state
// machine, the recovery sweeper, the lock service, the deadlock detector and the participant
// runner, over the in-memory adapters (src/memory), driven by the scheduler. What is simulated is
// only what AWS does for us: SQS delivery (loss, duplicates, delay and so reordering, redelivery
// after the visibility timeout, the DLQ after the receive limit), the state machine's waits,
// timeouts and retries as its synthesized definition states them, Lambda crashes, timeouts and warm
// containers, a clock per host, and freezes; and what a hostile participant may try (replies in
// another participant's name, votes from a non-member, messages on a queue of no participant).
// Faults stop at `healAtMs`; after that every transaction must end within `boundAfterHealMs`.
import { Coordinator, replyBatch, type ReplyAuthority, type ReplyRecord } from '../../src/coordinator';
import { sweep } from '../../src/recovery';
import { superviseRun, supervisorState, type SupervisorRun } from '../../src/supervisor';
import { LockService } from '../../src/locks/service';
import { DeadlockDetector } from '../../src/locks/detector';
import { Transactions, type TransactionPort } from '../../src/locks/transactions';
import { createRunner, type ParticipantRunner } from '../../src/participant/runner';
import type { DecisionSource } from '../../src/participant/decisions';
import { decisionOf } from '../../src/core/recovery';
import { PROTOCOL_VERSION, type ParticipantMessage, type ReplyMessage } from '../../src/core/messages';
import { TransitionError } from '../../src/core/log-transitions';
import type { SupervisionSettings, TxRecord } from '../../src/core/transaction';
import type { LockStorePort, ParticipantQueuesPort, ReplySender, TxLogPort, WorkflowPort } from '../../src/core/ports';
import type { LockItem } from '../../src/core/locks';
import { MemoryTxLog } from '../../src/memory/log';
import { MemoryLockStore } from '../../src/memory/locks';
import { MemoryBarrierStore } from '../../src/memory/barrier';
import { MemoryParticipantQueues, MemoryQueue, type MessageAttributes, type SendFate } from '../../src/memory/sqs';
import { MemoryStepFunctions } from '../../src/memory/stepfunctions';
import { Livelock, Scheduler, gated, describeError, type Host, type Proc } from './scheduler';
import { createShop, type ModelOperation, type ModelShop } from './model';
import { coordinatorConfig } from '../support/fixtures';
import { DecisionWatch, checkDeadlockRecord, checkFinal, checkIsolation, checkLockWrite, checkWrite, type SentVotes } from './invariants';
import { supervisorDefinition, type SupervisorDefinition } from './definition';

export interface WorldOptions {
  seed: number;
  trace?: boolean;
  /** Check invariant 10 in its strict form (see checkFinal). */
  strictBarrier?: boolean;
  /**
   * Also require that a participant never runs its prepare after the PREPARE's deadline by its own
   * clock (issue 10, item 3: it should vote NO without running user code). Off by default: the
   * participant runner does not do this yet.
   */
  strictDeadline?: boolean;
}

/** Drawn from the seed: what this run looks like. */
export interface Scenario {
  services: string[];
  resourcesPerService: number;
  transactions: number;
  startWindowMs: number;
  healAtMs: number;
  boundAfterHealMs: number;
  drop: number;
  duplicate: number;
  delayMaxMs: number;
  crash: number;
  freeze: number;
  freezeMaxMs: number;
  /** Chance per second that Step Functions loses every execution (the local stack killed). */
  executionsLostPerSec: number;
  /**
   * Chance per second that one running supervisor execution is stopped (an operator's StopExecution,
   * or an execution that failed): its name stays taken, so the group needs a new generation.
   */
  executionsStoppedPerSec: number;
  /** Participants ask the coordinator for decisions they wait on (the in-doubt inquiry). */
  inquiry: boolean;
  clockSkewMaxMs: number;
  /** Clients that retry a failed start with their idempotency key. */
  idempotentClients: boolean;
  /** A participant's lock lease while its prepare runs (a YES extends it past the deadline). */
  lockLeaseMs: number;
  /** Chance that an operator aborts a transaction while it runs (POST /transactions/{id}/abort). */
  externalAbort: number;
  /** The sweeper's period (AWS: one minute; the embedded stack: a few seconds). */
  sweepEveryMs: number;
  /** How transactions are grouped for supervision. */
  supervision: SupervisionSettings;
  /** Mean time between two replies a hostile party sends (0: nobody hostile). */
  hostileEveryMs: number;
  /** Chance that a transaction declares resources for the coordinator to lock. */
  declareResources: number;
  /**
   * The reply function also checks each message's SQS SenderId against the participant's principal
   * (ReplyAuthority.senders). Then an impostor that may send on a participant's queue (no queue policy
   * for that principal) is refused too; without it such a message is the participant's own as far as
   * anyone can tell, so the impostor is not modelled.
   */
  senderCheck: boolean;
  /**
   * One participant down (its consumer stopped: nothing it is sent is handled) from `fromMs` until the
   * faults heal, long enough for its phase two to be parked with its own supervisor (10 min).
   */
  outage?: { service: string; fromMs: number };
}

const SERVICES = ['alpha', 'beta', 'gamma', 'delta'];
/** The Lambdas' timeouts and the queues' settings of the CDK app (cdk/functions.ts, cdk/queues.ts). */
const LAMBDA_TIMEOUT_MS = 10_000;
const SUPERVISE_TIMEOUT_MS = 60_000;
const PARTICIPANT_TIMEOUT_MS = 30_000;
const VISIBILITY_MS = 60_000;
const MAX_RECEIVES = 5;
const REPLY_BATCH = 10;
const DETECT_EVERY_MS = 1_000;
/** How long the hostile party keeps at it. */
const HOSTILE_FOR_MS = 60_000;
const INQUIRE_EVERY_MS = 2_000;
/** The queue ARNs the reply function's event source mappings report. */
const ARN_PREFIX = 'arn:aws:sqs:us-east-1:000000000000:sim-';
/** A queue with an event source mapping that belongs to no participant (a stray mapping). */
const STRANGER = 'stranger';

export function drawScenario(sim: Scheduler): Scenario {
  const r = sim.random;
  const faulty = r.chance(0.8);
  // Now and then a burst: many transactions at once over few resources, so that deadlocks form with
  // other transactions waiting beside the cycle.
  const burst = r.chance(0.2);
  const startWindowMs = burst ? 2_000 : r.pick([2_000, 5_000, 30_000]);
  const services = SERVICES.slice(0, burst ? 2 : r.int(2, SERVICES.length));
  const outage = faulty && r.chance(0.05) ? { service: r.pick(services), fromMs: r.int(0, startWindowMs) } : undefined;
  return {
    services,
    resourcesPerService: burst ? r.int(2, 3) : r.int(1, 3),
    transactions: burst ? r.int(8, 14) : r.int(2, 8),
    startWindowMs,
    healAtMs: startWindowMs + (outage ? r.int(11 * 60_000, 13 * 60_000) : r.int(1_000, 30_000)),
    boundAfterHealMs: BOUND_AFTER_HEAL_MS,
    drop: faulty ? r.pick([0, 0.02, 0.1, 0.3]) : 0,
    duplicate: faulty ? r.pick([0, 0.05, 0.2]) : 0,
    delayMaxMs: faulty ? r.pick([0, 200, 3_000]) : 0,
    crash: faulty ? r.pick([0, 0.002, 0.01]) : 0,
    freeze: faulty ? r.pick([0, 0, 0.005]) : 0,
    freezeMaxMs: 45_000,
    executionsLostPerSec: faulty ? r.pick([0, 0, 0.02]) : 0,
    executionsStoppedPerSec: faulty ? r.pick([0, 0, 0.05, 0.2]) : 0,
    inquiry: r.chance(0.5),
    clockSkewMaxMs: r.pick([0, 50, 500]),
    idempotentClients: r.chance(0.5),
    lockLeaseMs: r.pick([2_000, 5_000, 15_000]),
    externalAbort: r.pick([0, 0, 0.2]),
    sweepEveryMs: r.pick([5_000, 60_000]),
    supervision: { shards: r.pick([1, 2, 8]), bucketSeconds: r.pick([1, 5, 10]) },
    hostileEveryMs: r.pick([0, 0, 300, 2_000]),
    declareResources: r.pick([0, 0, 0.3]),
    senderCheck: r.chance(0.5),
    ...(outage ? { outage } : {}),
  };
}

/**
 * The termination bound: every transaction ends (and every hold is settled) within this long after
 * the faults heal. What it is made of, at worst: a sweeper period (60 s) to restart supervisors lost
 * with Step Functions, a supervisor's longest sleep (60 s, the re-send cap), phase-two re-sends whose
 * step doubles from the commit timeout (at most 30 s here) up to 60 s, a message hidden for its
 * 60 s visibility timeout by a crashed consumer, and a 30 s Backoff after a failed supervisor run.
 */
export const BOUND_AFTER_HEAL_MS = 300_000;

export interface WorldResult {
  seed: number;
  violations: string[];
  stats: {
    transactions: number;
    committed: number;
    aborted: number;
    crashes: number;
    freezes: number;
    events: number;
    deadlocksResolved: number;
    /** Replies sent in another's name or on a queue of no participant, and those of them the reply function dead-lettered. */
    forgeries: number;
    forgeriesDeadLettered: number;
    /** YES votes sent by services that are not members. */
    strangerVotes: number;
    /** Supervisor executions started, and how many times Step Functions lost every execution. */
    supervisors: number;
    executionsLost: number;
    executionsStopped: number;
    /** Prepares whose user code began after the message's deadline by the participant's clock. */
    latePrepares: number;
    /** Transactions supervision marked in doubt, parked with a participant's supervisor; supervisor generations claimed. */
    inDoubtMarked: number;
    parked: number;
    generationsClaimed: number;
    /** Virtual ms from the faults healing to the last transaction ending (0 if all ended before). */
    settledAfterHealMs: number;
    virtualMs: number;
  };
  trace?: string[];
}

const quietLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  appendKeys: () => undefined,
  resetKeys: () => undefined,
};

export async function runWorld(options: WorldOptions): Promise<WorldResult> {
  const sim = new Scheduler(options.seed, options.trace);
  const scenario = drawScenario(sim);
  const world = new World(options, sim, scenario, await supervisorDefinition());
  return world.run();
}

/** Who a process is, for the checks: the reply queue it consumes (null: one of no participant). */
interface Role {
  speaksFor?: string | null;
}

/** A warm Lambda container of the api function: one Coordinator, kept across the invocations it serves. */
interface ApiContainer {
  proc: Proc;
  coordinator: Coordinator;
}

class World {
  readonly log = new MemoryTxLog();
  readonly lockStore = new MemoryLockStore();
  /** The lock table as its writes left it (every write goes through `locks`), for the isolation checks. */
  private readonly lockShadow = new Map<string, LockItem>();
  /** Every lock write, seen as it is applied (the in-memory store applies a put synchronously). */
  private readonly locks: LockStorePort = new Proxy(this.lockStore, {
    get: (target, key, receiver) => {
      const value = Reflect.get(target, key, receiver) as unknown;
      if (key !== 'put' || typeof value !== 'function') return value;
      return (next: LockItem, expectedVersion: number, nowMs: number) => {
        const before = this.lockShadow.get(next.resource);
        const result = (value as LockStorePort['put']).call(target, next, expectedVersion, nowMs);
        if (expectedVersion === 0 ? before === undefined : before?.version === expectedVersion) {
          this.lockShadow.set(next.resource, { ...structuredClone(next), version: expectedVersion + 1 });
          this.violations.push(...checkLockWrite(before, next, (txId) => this.log.peek(txId)?.status));
        }
        return result;
      };
    },
  });
  readonly barriers = new Map<string, MemoryBarrierStore>();
  readonly stateMachineArn: string;
  readonly requestQueues = new Map<string, MemoryQueue>();
  readonly requestDlqs = new Map<string, MemoryQueue>();
  /** Participant (or STRANGER) -> its reply queue. */
  readonly replyQueues = new Map<string, MemoryQueue>();
  readonly replyDlq: MemoryQueue;
  readonly authority: ReplyAuthority;
  readonly sfn: MemoryStepFunctions;
  readonly shop: ModelShop;
  readonly violations: string[] = [];
  readonly decisions = new DecisionWatch();
  readonly started = new Set<string>();
  /** txId -> its members, as created. */
  readonly members = new Map<string, string[]>();
  readonly hosts: Record<'api' | 'reply' | 'supervise' | 'sweeper' | 'detector' | 'operator', Host>;
  readonly participantHosts = new Map<string, Host>();
  readonly sent: SentVotes = { yes: new Set(), readOnly: new Set(), firstYesAt: new Map() };
  /** Bodies of forged replies sent, and of replies the reply function dead-lettered. */
  private readonly forged = new Set<string>();
  private readonly deadLettered = new Set<string>();
  private strangerVotes = 0;
  private executionsLost = 0;
  private executionsStopped = 0;
  private readonly apiPool: ApiContainer[] = [];
  /** How often rarer paths ran: supervisors that marked participants in doubt, parked phase two, claimed a new generation. */
  readonly coverage = { markInDoubt: 0, park: 0, claimGroup: 0 };
  private healed = false;
  private lastOpenAt = 0;
  private deadlocksResolved = 0;
  private nextId = 0;
  private readonly polls = new Map<MemoryQueue, boolean>();
  private pendingStarts = 0;
  /** Virtual time at the start of the run, and when the faults heal. */
  private readonly startAt: number;
  private readonly healAt: number;

  constructor(
    readonly options: WorldOptions,
    readonly sim: Scheduler,
    readonly scenario: Scenario,
    readonly supervisor: SupervisorDefinition,
  ) {
    this.startAt = sim.now;
    this.healAt = sim.now + scenario.healAtMs;
    const host = (name: string): Host => ({ name, skewMs: sim.random.int(-scenario.clockSkewMaxMs, scenario.clockSkewMaxMs) });
    this.hosts = { api: host('api'), reply: host('reply'), supervise: host('supervise'), sweeper: host('sweeper'), detector: host('detector'), operator: host('operator') };
    const clock = () => sim.now;
    const queue = (name: string, dlq?: MemoryQueue) =>
      new MemoryQueue(name, { clock, visibilityTimeoutMs: VISIBILITY_MS, onSend: this.fate, ...(dlq ? { redrive: { deadLetterQueue: dlq, maxReceiveCount: MAX_RECEIVES } } : {}) });
    // The reply DLQ's sends are the reply function's refusals (its redrives arrive without a send).
    this.replyDlq = new MemoryQueue('replies-dlq', { clock, onSend: this.refused });
    for (const service of scenario.services) {
      this.participantHosts.set(service, host(service));
      this.barriers.set(service, new MemoryBarrierStore(service));
      const dlq = queue(`${service}-requests-dlq`);
      this.requestDlqs.set(service, dlq);
      this.requestQueues.set(service, queue(`${service}-requests`, dlq));
    }
    for (const owner of [...scenario.services, STRANGER]) this.replyQueues.set(owner, queue(`${owner}-replies`, this.replyDlq));
    this.authority = {
      owners: Object.fromEntries(scenario.services.map((s) => [replyArn(s), s])),
      ...(scenario.senderCheck ? { senders: Object.fromEntries(scenario.services.map((s) => [s, [roleId(s)]])) } : {}),
    };
    this.sfn = new MemoryStepFunctions({
      timers: sim.timers,
      random: () => sim.random.next(),
      handlers: { lambda: (functionArn, payload) => this.invokeSupervise(functionArn, payload) },
    });
    this.stateMachineArn = this.sfn.createStateMachine('sim', supervisor.definition);
    this.shop = createShop(scenario.services, scenario.resourcesPerService, 10, {
      now: () => sim.now,
      clockOf: (service) => () => sim.now + this.participantHosts.get(service)!.skewMs,
      decisionOf: (txId) => this.decisions.of(txId),
    });
  }

  // -------------------------------------------------------------------------------------------
  // The product, built per process over gated ports (each call is a place where the scheduler
  // interleaves, delays, freezes or crashes it).

  /**
   * The log as a process sees it: gated, and observed at the very moment of each write (the
   * in-memory log applies a write synchronously), so the checks see the decision just before, the
   * record just after, and the writing host's clock then.
   */
  private txLog(process: Proc | (() => Proc), role: Role = {}): TxLogPort {
    const current = typeof process === 'function' ? process : () => process;
    const log = this.log;
    const world = this;
    const observed = new Proxy(log, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          const op = String(key);
          const decidedBefore = typeof args[0] === 'string' && VOTES.has(op) ? world.decisions.of(args[0]) : undefined;
          if (op === 'create') world.members.set((args[0] as TxRecord).txId, (args[0] as TxRecord).services);
          const clockMs = current().clock();
          let result: Promise<unknown>;
          try {
            result = (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } catch (err) {
            world.noteProductError(`log.${op}`, err);
            throw err;
          }
          return result.then(
            (answer) => {
              const written = answer as { applied?: boolean; record?: TxRecord } | TxRecord | TxRecord[] | undefined;
              if (Array.isArray(written)) for (const r of written) world.decisions.see(r);
              else if (written && typeof written === 'object' && 'applied' in written) {
                world.decisions.see(written.record);
                if (written.applied && written.record) {
                  world.violations.push(...checkWrite({ op, args, decidedBefore, after: written.record, speaksFor: role.speaksFor, clockMs }));
                  if (op in world.coverage) world.coverage[op as keyof World['coverage']]++;
                }
              } else if (written && typeof written === 'object' && 'txId' in written) world.decisions.see(written as TxRecord);
              else if (op === 'claimGroup' && written) world.coverage.claimGroup++;
              return answer;
            },
            (err: unknown) => {
              world.noteProductError(`log.${op}`, err);
              throw err;
            },
          );
        };
      },
    });
    return gated<TxLogPort>(observed, current, 'log');
  }

  private workflow(process: Proc | (() => Proc)): WorkflowPort {
    return gated<WorkflowPort>(this.sfn, process, 'sfn');
  }

  private queues(process: Proc | (() => Proc)): ParticipantQueuesPort {
    const inner = gated<ParticipantQueuesPort>(
      new MemoryParticipantQueues(Object.fromEntries(this.requestQueues), Object.fromEntries(this.requestDlqs), this.replyDlq),
      process,
      'queues',
    );
    return {
      send: async (messages: ParticipantMessage[]) => {
        await inner.send(messages);
        for (const m of messages) {
          const queue = this.requestQueues.get(m.participant);
          if (queue) this.wake(queue);
        }
      },
      deadLetter: (messages, reason) => inner.deadLetter(messages, reason),
      deadLetterReply: (body, reason, owner) => inner.deadLetterReply(body, reason, owner),
    };
  }

  /** A participant's side of its own reply queue; the world notes each vote as it is sent (the validity checks). */
  private replies(proc: Proc, service: string): ReplySender {
    const queue = this.replyQueues.get(service)!;
    const send = async (message: ReplyMessage): Promise<void> => {
      queue.send(JSON.stringify(message), senderOf(`${roleId(service)}:${service}-session`));
      if (message.type === 'VOTE' && message.participant === service) {
        const key = `${service}|${message.txId}`;
        if (message.vote === 'YES') {
          this.sent.yes.add(key);
          if (!this.sent.firstYesAt.has(key)) this.sent.firstYesAt.set(key, this.sim.now);
        }
        if (message.vote === 'READ_ONLY') this.sent.readOnly.add(key);
      }
      this.wake(queue);
    };
    return gated<ReplySender>({ send }, proc, 'replies');
  }

  /**
   * SQS's faults, decided at each send: a message may be lost, duplicated, or arrive late (and so
   * out of order). None once the faults have healed.
   */
  private fate = (queue: string): SendFate => {
    if (this.healed) return { copies: 1, delayMs: 0 };
    const { drop, duplicate, delayMaxMs } = this.scenario;
    const r = this.sim.random;
    const copies = r.chance(drop) ? 0 : r.chance(duplicate) ? 2 : 1;
    const delayMs = delayMaxMs === 0 ? 0 : r.int(0, delayMaxMs);
    if (copies !== 1) this.sim.log(`${copies === 0 ? 'lose' : 'duplicate'} a message to ${queue}`);
    return { copies, delayMs };
  };

  /** A reply the reply function refused (8): it must be a forged one, never a participant's own. */
  private refused = (_queue: string, body: string, attributes: MessageAttributes): SendFate => {
    this.deadLettered.add(body);
    if (!this.forged.has(body)) {
      this.violations.push(`authenticity: a genuine reply was dead-lettered (${attributes['dtc-reason']?.StringValue ?? 'no reason'}): ${body.slice(0, 200)}`);
    }
    return { copies: 1, delayMs: 0 };
  };

  private lockService(process: Proc | (() => Proc), transactions: TransactionPort): LockService {
    const current = typeof process === 'function' ? process : () => process;
    return new LockService({
      store: gated<LockStorePort>(this.locks, current, 'locks'),
      transactions,
      nowMs: () => current().clock(),
      random: () => this.sim.random.next(),
      sleep: (ms, signal) => current().sleep(ms, signal),
      logger: quietLogger,
    });
  }

  private coordinator(process: Proc | (() => Proc), role: Role = {}): Coordinator {
    const current = typeof process === 'function' ? process : () => process;
    const log = this.txLog(current, role);
    const coordinator: Coordinator = new Coordinator({
      config: { ...coordinatorConfig('sim-log', this.scenario.services), stateMachineArn: this.stateMachineArn, supervision: this.scenario.supervision },
      log,
      queues: this.queues(current),
      workflow: this.workflow(current),
      // The coordinator's own lock service: its Transactions are the coordinator itself.
      locks: this.lockService(current, new Transactions(log, { abort: (txId, reason) => coordinator.abort(txId, reason) })),
      now: () => current().clock(),
      newId: () => this.id('tx'),
    });
    return coordinator;
  }

  /** A warm container of the api function (a crashed one is gone; a finished one serves the next call). */
  private apiContainer(proc: Proc): ApiContainer {
    const container = this.apiPool.pop() ?? ({ proc } as ApiContainer);
    container.proc = proc;
    container.coordinator ??= this.coordinator(() => container.proc);
    return container;
  }

  /** A call to the coordinator's API from `proc` (a participant): an invocation of the api function. */
  private api<T>(what: (coordinator: Coordinator, log: TxLogPort, proc: Proc) => Promise<T>): Promise<T> {
    return this.invoke('api', this.hosts.api, LAMBDA_TIMEOUT_MS, async (proc) => {
      const container = this.apiContainer(proc);
      const result = await what(container.coordinator, this.txLog(proc), proc);
      this.apiPool.push(container);
      return result;
    });
  }

  /** A participant's view of the transactions: GET /transactions/{id}/decision and POST /transactions/{id}/abort. */
  private apiTransactions(proc: Proc): TransactionPort {
    return gated<TransactionPort>(
      {
        get: (txId) => this.api(async (_c, log) => {
          const r = await log.get(txId);
          return r && { txId: r.txId, status: r.status, createdAt: r.createdAt };
        }),
        abort: (txId, reason) => this.api((coordinator, log) => new Transactions(log, coordinator).abort(txId, reason)),
      },
      proc,
      'api',
    );
  }

  private runner(proc: Proc, service: string): ParticipantRunner {
    const decisions: DecisionSource | undefined = this.scenario.inquiry
      ? gated<DecisionSource>({ read: (txId) => this.api(async (_c, log) => decisionOf(await log.get(txId))) }, proc, 'api')
      : undefined;
    return createRunner({
      participant: this.shop.participants.get(service)!,
      barrierStore: gated(this.barriers.get(service)!, proc, `barrier:${service}`),
      replies: this.replies(proc, service),
      locks: this.lockService(proc, this.apiTransactions(proc)),
      nowMs: proc.clock,
      newRunId: () => this.id('run'),
      sleep: proc.sleep,
      leaseMs: 30_000,
      lockLeaseMs: this.scenario.lockLeaseMs,
      ...(decisions ? { decisions, inquireAfterMs: 5_000, inquiryMaxBackoffMs: 20_000 } : {}),
    });
  }

  private id(prefix: string): string {
    // txIds must be 8-64 letters, digits or dashes.
    return `${prefix}-${String(++this.nextId).padStart(6, '0')}`;
  }

  // -------------------------------------------------------------------------------------------
  // What AWS does: invoke Lambdas for Step Functions and for the queues' event source mappings.

  /** The Supervise task: lambda:invoke of the supervise function with the execution's state as its payload. */
  private invokeSupervise(functionArn: string, payload: unknown): Promise<SupervisorRun> {
    if (functionArn !== this.supervisor.superviseArn) return Promise.reject(Object.assign(new Error(`unknown function ${functionArn}`), { name: 'Lambda.ResourceNotFoundException', $fault: 'client' }));
    return this.invoke('supervise', this.hosts.supervise, SUPERVISE_TIMEOUT_MS, async (proc) => {
      // As lambdas/supervise.ts: a malformed state fails the task.
      const parsed = supervisorState.safeParse(payload);
      if (!parsed.success) throw new Error(`supervisor state is malformed: ${parsed.error.message}`);
      const log = this.txLog(proc);
      return superviseRun(this.coordinator(proc), { log, workflow: this.workflow(proc), now: proc.clock, stateMachineArn: this.stateMachineArn }, parsed.data);
    });
  }

  /** One Lambda invocation: its error, its crash or its timeout is what its caller sees. */
  private invoke<T>(name: string, host: Host, timeoutMs: number, body: (proc: Proc) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const proc = this.sim.run(name, host, body, (outcome) => {
        timer.cancel();
        if (outcome.ok) resolve(outcome.value);
        else {
          this.noteProductError(name, outcome.error);
          reject(outcome.error);
        }
      });
      proc.onDeath = () => {
        timer.cancel();
        // What Lambda reports for a function that died (Step Functions sees the error type).
        reject(Object.assign(new Error(`${name} crashed`), { name: 'Runtime.ExitError' }));
      };
      const timer = this.sim.after(timeoutMs, () => {
        if (proc.finished || proc.dead) return;
        this.sim.kill(proc, 'timed out');
      });
    });
  }

  /** An assertion inside the product is a violation, whatever else the error means. */
  noteProductError(where: string, error: unknown): void {
    const name = error instanceof Error ? error.name : '';
    if (error instanceof TransitionError || name === 'ProtocolViolationError' || name === 'TransitionError' || name === 'AssertionError') {
      this.violations.push(`product assertion in ${where}: ${describeError(error)}`);
    }
  }

  private wake(queue: MemoryQueue): void {
    if (this.polls.get(queue)) return;
    this.polls.set(queue, true);
    this.sim.after(this.sim.random.int(1, 20), () => {
      this.polls.set(queue, false);
      this.poll(queue);
    });
  }

  /** The event source mapping: take what is visible, one invocation per batch; failures stay on the queue. */
  private poll(queue: MemoryQueue): void {
    const owner = [...this.replyQueues].find(([, q]) => q === queue)?.[0];
    if (owner === undefined && this.down(queue)) {
      // A participant that is down handles nothing; its queue keeps what it is sent until it is back.
      this.sim.at(this.healAt, () => this.wake(queue));
      return;
    }
    const batch = queue.receive(owner !== undefined ? REPLY_BATCH : 1, VISIBILITY_MS);
    if (batch.length === 0) {
      const next = queue.nextVisibleAt();
      if (next !== undefined) this.sim.at(next, () => this.wake(queue));
      return;
    }
    let run: Promise<{ batchItemFailures: { itemIdentifier: string }[] }>;
    if (owner !== undefined) {
      // The SQS record as the event source mapping delivers it: the queue's ARN and the sender's principal id.
      const records: ReplyRecord[] = batch.map((m) => ({
        messageId: m.messageId,
        body: m.body,
        eventSourceARN: replyArn(owner),
        attributes: { SenderId: m.attributes[SENDER_ATTRIBUTE]?.StringValue ?? 'unknown' },
      }));
      const role: Role = { speaksFor: owner === STRANGER ? null : owner };
      run = this.invoke('reply', this.hosts.reply, LAMBDA_TIMEOUT_MS, (proc) =>
        replyBatch(this.coordinator(proc, role), this.queues(proc), this.authority, records, quietLogger),
      );
      run.then(
        (response) => {
          // 8: every forged reply the function got through is in the reply DLQ.
          const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
          for (const m of batch) {
            if (failed.has(m.messageId) || !this.forged.has(m.body)) continue;
            if (!this.deadLettered.has(m.body)) this.violations.push(`authenticity: a forged reply was handled without going to the reply DLQ: ${m.body}`);
          }
        },
        () => undefined,
      );
    } else {
      const service = [...this.requestQueues].find(([, q]) => q === queue)![0];
      run = this.invoke(`participant:${service}`, this.participantHosts.get(service)!, PARTICIPANT_TIMEOUT_MS, async (proc) => {
        await this.runner(proc, service).handleBody(batch[0]!.body);
        return { batchItemFailures: [] };
      });
    }
    run.then(
      (response) => {
        const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
        for (const m of batch) if (!failed.has(m.messageId)) queue.delete(m.receiptHandle);
      },
      () => undefined,
    );
    this.wake(queue);
  }

  // -------------------------------------------------------------------------------------------
  // The run

  async run(): Promise<WorldResult> {
    const { sim, scenario } = this;
    sim.gates = { latencyMs: 5, crash: scenario.crash, freeze: scenario.freeze, freezeMaxMs: scenario.freezeMaxMs };
    for (let i = 0; i < scenario.transactions; i++) sim.after(sim.random.int(0, scenario.startWindowMs), () => this.startOne());
    sim.after(scenario.healAtMs, () => this.heal());
    this.every(scenario.sweepEveryMs, 'sweeper', this.hosts.sweeper, (proc) =>
      sweep({ log: this.txLog(proc), workflow: this.workflow(proc), now: proc.clock }, { stateMachineArn: this.stateMachineArn }),
    );
    this.every(DETECT_EVERY_MS, 'detector', this.hosts.detector, (proc) => this.detect(proc));
    if (scenario.inquiry) {
      for (const service of scenario.services) {
        this.every(INQUIRE_EVERY_MS, `inquiry:${service}`, this.participantHosts.get(service)!, async (proc) => {
          if (!this.down(this.requestQueues.get(service)!)) await this.inquire(proc, service);
        });
      }
    }
    if (scenario.executionsLostPerSec > 0 || scenario.executionsStoppedPerSec > 0) {
      this.every(1_000, 'sfn-chaos', this.hosts.sweeper, async () => {
        if (this.healed) return;
        if (sim.random.chance(scenario.executionsLostPerSec)) {
          sim.log('Step Functions loses every execution');
          this.executionsLost++;
          this.sfn.crash();
        }
        const running = this.sfn.running();
        if (running.length > 0 && sim.random.chance(scenario.executionsStoppedPerSec)) {
          const victim = sim.random.pick(running);
          sim.log(`stop the supervisor ${victim}`);
          this.executionsStopped++;
          this.sfn.stop(victim);
        }
      });
    }
    if (scenario.hostileEveryMs > 0) this.hostile();

    const healAt = this.healAt;
    const deadline = healAt + scenario.boundAfterHealMs;
    try {
      await sim.runUntil(deadline, () => this.healed && this.settled());
    } catch (err) {
      if (!(err instanceof Livelock)) throw err;
      this.violations.push(`termination: ${err.message}`);
    }
    if (!this.settled()) this.violations.push(`termination: not every transaction ended within ${scenario.boundAfterHealMs} ms after the faults healed`);
    // Every record, not only those whose client heard back: a start that crashed after the write runs too.
    const records = new Map(this.log.records().map((r) => [r.txId, r]));
    for (const txId of records.keys()) this.started.add(txId);
    const operations = new Map<string, Map<string, ModelOperation>>();
    for (const txId of records.keys()) {
      const ops = await this.log.getOps(txId);
      const participants = ops ? (JSON.parse(ops.participants) as { service: string; operation: ModelOperation }[]) : [];
      operations.set(txId, new Map(participants.map((p) => [p.service, p.operation])));
    }
    this.violations.push(...this.decisions.violations);
    this.violations.push(...checkFinal(records, this.shop, this.started, this.sent, { strictBarrier: this.options.strictBarrier, strictDeadline: this.options.strictDeadline }));
    const resourcesOf = (txId: string, service: string): string[] => (operations.get(txId)?.get(service)?.items ?? []).map((i) => i.resource);
    this.violations.push(...checkIsolation(this.shop, records, resourcesOf));
    const committed = [...records.values()].filter((r) => r.status === 'COMMITTED').length;
    const aborted = [...records.values()].filter((r) => r.status === 'ABORTED').length;
    return {
      seed: this.options.seed,
      violations: [...new Set(this.violations)],
      stats: {
        transactions: this.started.size,
        committed,
        aborted,
        crashes: sim.counts.crashes,
        freezes: sim.counts.freezes,
        events: sim.counts.events,
        deadlocksResolved: this.deadlocksResolved,
        forgeries: this.forged.size,
        forgeriesDeadLettered: [...this.forged].filter((b) => this.deadLettered.has(b)).length,
        strangerVotes: this.strangerVotes,
        supervisors: this.sfn.stats().executionsStarted,
        executionsLost: this.executionsLost,
        executionsStopped: this.executionsStopped,
        latePrepares: this.shop.journal.filter((j) => j.kind === 'prepare-start' && j.late).length,
        inDoubtMarked: this.coverage.markInDoubt,
        parked: this.coverage.park,
        generationsClaimed: this.coverage.claimGroup,
        settledAfterHealMs: Math.max(0, this.lastOpenAt - healAt),
        virtualMs: sim.elapsed,
      },
      ...(sim.trace ? { trace: sim.trace } : {}),
    };
  }

  /** Whether `queue` is the request queue of a participant that is down now. */
  private down(queue: MemoryQueue): boolean {
    const outage = this.scenario.outage;
    return outage !== undefined && !this.healed && this.sim.now >= this.startAt + outage.fromMs && this.requestQueues.get(outage.service) === queue;
  }

  private settled(): boolean {
    const open = this.log.openCount() > 0 || this.pendingStarts > 0 || [...this.shop.stock.values()].some((s) => s.holds.size > 0);
    if (open) this.lastOpenAt = this.sim.now;
    return !open;
  }

  private heal(): void {
    this.healed = true;
    this.sim.gates = { ...this.sim.gates, crash: 0, freeze: 0 };
    this.sim.log('faults healed');
  }

  /** A periodic job (a schedule), each run its own process; stops once the world has settled. */
  private every(periodMs: number, name: string, host: Host, body: (proc: Proc) => Promise<unknown>): void {
    const tick = (): void => {
      this.sim.run(name, host, body, (outcome) => {
        if (!outcome.ok) this.noteProductError(name, outcome.error);
      });
      this.sim.after(periodMs, tick);
    };
    this.sim.after(this.sim.random.int(0, periodMs), tick);
  }

  private startOne(): void {
    const { services, resourcesPerService } = this.scenario;
    const r = this.sim.random;
    const members = services.filter(() => r.chance(0.7));
    if (members.length === 0) members.push(r.pick(services));
    const declare = r.chance(this.scenario.declareResources);
    const participants = members.map((service) => {
      const count = r.int(1, resourcesPerService);
      const resources = Array.from({ length: resourcesPerService }, (_, i) => `r${i}`);
      // A random order of a random subset: transactions lock in different orders, so they can deadlock.
      const items = Array.from({ length: count }, () => ({ resource: resources.splice(r.int(0, resources.length - 1), 1)[0]!, amount: r.int(1, 4) }));
      const kind = r.next();
      const operation: ModelOperation = { items, ...(kind < 0.1 ? { refuse: true } : kind < 0.15 ? { readOnly: true } : {}) };
      // Resources the coordinator locks before PREPARE (an account, say): few, so transactions contend.
      return { service, operation, ...(declare ? { resources: [`acct-${r.int(0, 2)}`] } : {}) };
    });
    const body = { participants, timeouts: { prepareSeconds: r.int(1, 10), commitSeconds: r.int(2, 30) } };
    const key = this.scenario.idempotentClients ? this.id('key') : undefined;
    const attempt = (n: number): void => {
      this.pendingStarts++;
      // POST /transactions: the api function, in a warm container when one is free.
      this.invoke('api', this.hosts.api, LAMBDA_TIMEOUT_MS, async (proc) => {
        const container = this.apiContainer(proc);
        const outcome = await container.coordinator.start(body, key);
        this.apiPool.push(container);
        return outcome;
      }).then(
        (outcome) => {
          this.pendingStarts--;
          if (outcome.kind !== 'started') {
            this.violations.push(`api: a valid request was refused: ${JSON.stringify(outcome)}`);
            return;
          }
          this.started.add(outcome.txId);
          if (this.sim.random.chance(this.scenario.externalAbort)) {
            const txId = outcome.txId;
            this.sim.after(this.sim.random.int(0, body.timeouts.prepareSeconds * 1_000 + 2_000), () => this.abortFromOutside(txId));
          }
        },
        () => {
          this.pendingStarts--;
          // The client saw an error: with a key it retries (the same transaction), without one it gives up
          // (a record may exist that it never heard of; supervision must end it too).
          if (key !== undefined && n < 5) this.sim.after(this.sim.random.int(100, 2_000), () => attempt(n + 1));
        },
      );
    };
    attempt(1);
  }

  /** POST /transactions/{id}/abort by an operator: 202 when ABORT is (or was) the decision, 409 when COMMIT is. */
  private abortFromOutside(txId: string): void {
    this.api((coordinator) => coordinator.abort(txId, 'aborted by an operator')).then(
      (outcome) => {
        if (outcome.kind === 'unknown') this.violations.push(`api: abort of started ${txId} answered unknown`);
        if (outcome.kind === 'aborted' && outcome.record.decision !== 'ABORT') this.violations.push(`api: abort of ${txId} answered aborted with decision ${outcome.record.decision ?? 'none'}`);
        // 409 only once COMMIT is the decision or every YES is in (then COMMIT is the only outcome).
        if (outcome.kind === 'committed' && outcome.record.decision !== 'COMMIT' && outcome.record.ok !== outcome.record.req) {
          this.violations.push(`api: abort of ${txId} answered committed while a YES was missing`);
        }
      },
      () => undefined,
    );
  }

  /**
   * A hostile party, now and then until the faults heal (for a minute at most): a participant sends a reply in another
   * participant's name on its own reply queue (a vote or an acknowledgement), a service that is not a
   * member votes YES for itself, or a message arrives on a queue that belongs to no participant. The
   * first and last must be dead-lettered and change nothing; the second changes nothing.
   */
  private hostile(): void {
    const { sim, scenario } = this;
    const r = sim.random;
    const next = (): void => {
      if (this.healed || sim.now - this.startAt > HOSTILE_FOR_MS) return;
      sim.after(r.int(1, 2 * scenario.hostileEveryMs), () => {
        this.forge();
        next();
      });
    };
    next();
  }

  private forge(): void {
    const r = this.sim.random;
    // Mostly at transactions still undecided, where a forged vote could still count.
    const ids = [...this.members.keys()];
    const open = ids.filter((id) => this.decisions.of(id) === undefined);
    if (ids.length === 0) return;
    const txId = r.pick(open.length > 0 && r.chance(0.8) ? open : ids);
    const members = this.members.get(txId) ?? [];
    const services = this.scenario.services;
    const strangers = services.filter((s) => !members.includes(s));
    const kind = r.pick(['vote', 'ack', 'non-member', 'stray-queue', 'impostor', 'malformed'] as const);
    const base = { v: PROTOCOL_VERSION, txId };
    let sender: string;
    let message: Record<string, unknown>;
    /** Whose principal sends: the queue's owner, except for an impostor. */
    let principal: string | undefined;
    if (kind === 'impostor' && this.scenario.senderCheck) {
      // Someone else's principal sends on the victim's own queue, in the victim's name.
      sender = r.pick(services);
      principal = `${roleId(STRANGER)}:impostor`;
      message = { ...base, type: 'VOTE', participant: sender, vote: 'YES' };
    } else if (kind === 'malformed') {
      // On its own queue, in its own name, but not a message the protocol knows.
      sender = r.pick(services);
      message = r.pick([
        { ...base, type: 'VOTE', participant: sender, vote: 'MAYBE' },
        { ...base, type: 'COMMIT', participant: sender },
        { v: 2, txId, type: 'VOTE', participant: sender, vote: 'YES' },
        { ...base, type: 'VOTE', participant: sender },
      ]);
    } else if (kind === 'non-member' && strangers.length > 0) {
      sender = r.pick(strangers);
      message = { ...base, type: 'VOTE', participant: sender, vote: 'YES' };
      this.strangerVotes++;
    } else {
      sender = kind === 'stray-queue' ? STRANGER : r.pick(services);
      const victims = [...members, ...services].filter((s) => s !== sender);
      if (victims.length === 0) return;
      const victim = r.pick(victims);
      message =
        kind === 'ack'
          ? { ...base, type: 'ACK', participant: victim, phase: r.pick(['COMMIT', 'ABORT']) }
          : { ...base, type: 'VOTE', participant: victim, vote: r.pick(['YES', 'YES', 'NO', 'READ_ONLY']) };
    }
    // A nonce makes each forged body unique, so the checks can find it in the DLQ (the product ignores it).
    const body = JSON.stringify({ ...message, nonce: this.id('forged') });
    if (sender === STRANGER || message.participant !== sender || principal !== undefined || kind === 'malformed') this.forged.add(body);
    const queue = this.replyQueues.get(sender)!;
    const host = sender === STRANGER || principal !== undefined ? this.hosts.operator : this.participantHosts.get(sender)!;
    const senderId = principal ?? `${roleId(sender)}:${sender}-session`;
    this.sim.run(`hostile:${principal === undefined ? sender : 'impostor'}`, host, async (proc) => {
      await gated({ send: async () => void queue.send(body, senderOf(senderId)) }, proc, 'replies').send();
      this.wake(queue);
    });
  }

  private async detect(proc: Proc): Promise<void> {
    const store = gated<LockStorePort>(this.locks, proc, 'locks');
    let seen: LockItem[] = [];
    let seenAt = 0;
    const observed: LockStorePort = new Proxy(store, {
      get: (target, key, receiver) => {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (key !== 'waiting' || typeof value !== 'function') return value;
        return async () => {
          seen = await (value as () => Promise<LockItem[]>).apply(target);
          seenAt = proc.clock();
          return seen;
        };
      },
    });
    const coordinator = this.coordinator(proc);
    const detector = new DeadlockDetector({ store: observed, transactions: new Transactions(this.txLog(proc), coordinator), nowMs: proc.clock, logger: quietLogger });
    const report = await detector.run('schedule');
    for (const record of report.resolved) {
      this.deadlocksResolved++;
      this.violations.push(...checkDeadlockRecord(record, seen, seenAt));
    }
  }

  /** A participant's scheduled in-doubt job: find what it voted YES on and ask for each decision due. */
  private async inquire(proc: Proc, service: string): Promise<void> {
    const runner = this.runner(proc, service);
    await runner.inDoubt?.recoverStored();
    await runner.inDoubt?.inquireDue();
  }
}

/** The vote writes: the checks peek at the record just before them (was it decided already?). */
const VOTES = new Set(['recordYes', 'recordNo']);

function replyArn(owner: string): string {
  return `${ARN_PREFIX}${owner}-replies`;
}

/** A participant's IAM role id (what SenderId starts with when the participant sends). */
function roleId(owner: string): string {
  return `AROA${owner.toUpperCase()}`;
}

/** SQS records who sent a message (SenderId); the model carries it as an attribute under this name. */
const SENDER_ATTRIBUTE = 'sim-sender-id';

function senderOf(senderId: string): MessageAttributes {
  return { [SENDER_ATTRIBUTE]: { DataType: 'String', StringValue: senderId } };
}
