// One simulated world: the real coordinator, recovery sweeper, lock service, deadlock detector and
// participant runner, over the in-memory adapters (src/memory), driven by the scheduler. What is
// simulated is only what AWS does for us: SQS delivery (loss, duplicates, delay and so reordering,
// redelivery after the visibility timeout, the DLQ after the receive limit), the state machine's
// waits, timeouts and retries as its synthesized definition states them, Lambda crashes and
// timeouts, a clock per host, and freezes. Faults stop at `healAtMs`; after that every transaction
// must end within `boundAfterHealMs`.
import { Coordinator, dispatchTask, replyBatch, type HandlerLogger } from '../../src/coordinator';
import { sweep } from '../../src/recovery';
import { LockService } from '../../src/locks/service';
import { DeadlockDetector } from '../../src/locks/detector';
import { Transactions } from '../../src/locks/transactions';
import { createRunner, type ParticipantRunner } from '../../src/participant/runner';
import { decisionOf } from '../../src/core/recovery';
import type { ParticipantMessage, ReplyMessage } from '../../src/core/messages';
import type { TxRecord } from '../../src/core/transaction';
import type { DecisionSourcePort, LockStorePort, ParticipantQueuesPort, ReplySender, TxLogPort, WorkflowPort } from '../../src/core/ports';
import type { LockItem } from '../../src/core/locks';
import { MemoryTxLog } from '../../src/memory/log';
import { MemoryLockStore } from '../../src/memory/locks';
import { MemoryBarrierStore } from '../../src/memory/barrier';
import { MemoryParticipantQueues, MemoryQueue, MemoryReplySender, type SendFate } from '../../src/memory/sqs';
import { WORKFLOW_DISPATCH_ARN, workflowDefinition } from '../../src/memory/definition';
import { MemoryStepFunctions } from '../../src/memory/stepfunctions';
import { Livelock, Scheduler, gated, describeError, type Host, type Proc } from './scheduler';
import { createShop, type ModelOperation, type ModelShop } from './model';
import { coordinatorConfig } from '../support/fixtures';
import { DecisionWatch, checkDeadlockRecord, checkFinal, checkIsolation, checkVoteTiming } from './invariants';
import { stepFunctionsDynamoTask } from './dynamo-tasks';

export interface WorldOptions {
  seed: number;
  trace?: boolean;
  /** Check invariant 10 in its strict form (see checkFinal). */
  strictBarrier?: boolean;
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
  /** Participants ask the coordinator for decisions they wait on (the in-doubt inquiry). */
  inquiry: boolean;
  clockSkewMaxMs: number;
  /** Clients that retry a failed start with their idempotency key. */
  idempotentClients: boolean;
  /** A participant's lock lease while its prepare runs (a YES extends it past the deadline). */
  lockLeaseMs: number;
  /** Chance that someone else (an operator, a lock takeover) aborts a transaction while it runs. */
  externalAbort: number;
}

const SERVICES = ['alpha', 'beta', 'gamma', 'delta'];
/** The Lambdas' timeouts and the queues' settings of the CDK app (cdk/functions.ts, cdk/queues.ts). */
const LAMBDA_TIMEOUT_MS = 10_000;
const PARTICIPANT_TIMEOUT_MS = 30_000;
const VISIBILITY_MS = 60_000;
const MAX_RECEIVES = 5;
const SWEEP_EVERY_MS = 5_000;
const STALE_MS = 10_000;
const DETECT_EVERY_MS = 1_000;
const INQUIRE_EVERY_MS = 2_000;

export function drawScenario(sim: Scheduler): Scenario {
  const r = sim.random;
  const faulty = r.chance(0.8);
  const startWindowMs = r.pick([2_000, 5_000, 30_000]);
  return {
    services: SERVICES.slice(0, r.int(2, SERVICES.length)),
    resourcesPerService: r.int(1, 3),
    transactions: r.int(2, 8),
    startWindowMs,
    healAtMs: startWindowMs + r.int(1_000, 30_000),
    boundAfterHealMs: 600_000,
    drop: faulty ? r.pick([0, 0.02, 0.1]) : 0,
    duplicate: faulty ? r.pick([0, 0.05, 0.2]) : 0,
    delayMaxMs: faulty ? r.pick([0, 200, 3_000]) : 0,
    crash: faulty ? r.pick([0, 0.002, 0.01]) : 0,
    freeze: faulty ? r.pick([0, 0, 0.005]) : 0,
    freezeMaxMs: 45_000,
    executionsLostPerSec: faulty ? r.pick([0, 0, 0.02]) : 0,
    inquiry: r.chance(0.5),
    clockSkewMaxMs: r.pick([0, 50, 500]),
    idempotentClients: r.chance(0.5),
    lockLeaseMs: r.pick([2_000, 5_000, 15_000]),
    externalAbort: r.pick([0, 0, 0.2]),
  };
}

export interface WorldResult {
  seed: number;
  violations: string[];
  stats: { transactions: number; committed: number; aborted: number; crashes: number; freezes: number; events: number; deadlocksResolved: number; virtualMs: number };
  trace?: string[];
}

const quietLogger: HandlerLogger & { info(): void } = {
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
  const world = new World(options, sim, scenario);
  return world.run();
}

class World {
  readonly log = new MemoryTxLog();
  readonly lockStore = new MemoryLockStore();
  readonly barriers = new Map<string, MemoryBarrierStore>();
  readonly stateMachineArn: string;
  readonly requestQueues = new Map<string, MemoryQueue>();
  readonly replyQueue: MemoryQueue;
  readonly sfn: MemoryStepFunctions;
  readonly shop: ModelShop;
  readonly violations: string[] = [];
  readonly decisions = new DecisionWatch();
  readonly started = new Set<string>();
  readonly hosts: Record<'api' | 'dispatch' | 'reply' | 'sweeper' | 'detector', Host>;
  readonly participantHosts = new Map<string, Host>();
  private healed = false;
  private deadlocksResolved = 0;
  private nextId = 0;
  private readonly polls = new Map<MemoryQueue, boolean>();

  constructor(
    readonly options: WorldOptions,
    readonly sim: Scheduler,
    readonly scenario: Scenario,
  ) {
    const host = (name: string): Host => ({ name, skewMs: sim.random.int(-scenario.clockSkewMaxMs, scenario.clockSkewMaxMs) });
    this.hosts = { api: host('api'), dispatch: host('dispatch'), reply: host('reply'), sweeper: host('sweeper'), detector: host('detector') };
    const timers = sim.timers;
    const clock = () => sim.now;
    const queue = (name: string, dlq?: MemoryQueue) =>
      new MemoryQueue(name, { clock, visibilityTimeoutMs: VISIBILITY_MS, onSend: this.fate, ...(dlq ? { redrive: { deadLetterQueue: dlq, maxReceiveCount: MAX_RECEIVES } } : {}) });
    for (const service of scenario.services) {
      this.participantHosts.set(service, host(service));
      this.barriers.set(service, new MemoryBarrierStore(service));
      this.requestQueues.set(service, queue(`${service}-requests`, queue(`${service}-dlq`)));
    }
    this.replyQueue = queue('replies', queue('replies-dlq'));
    this.sfn = new MemoryStepFunctions({
      timers,
      random: () => sim.random.next(),
      handlers: {
        lambda: (functionArn, payload) => this.invokeDispatch(functionArn, payload),
        dynamodb: (operation, parameters) => this.dynamoTask(operation, parameters),
      },
    });
    this.stateMachineArn = this.sfn.createStateMachine('sim', workflowDefinition());
    this.shop = createShop(scenario.services, scenario.resourcesPerService, 10, () => sim.now);
  }

  // -------------------------------------------------------------------------------------------
  // The product, built per process over gated ports (each call is a place where the scheduler
  // interleaves, delays, freezes or crashes it).

  private txLog(proc: Proc): TxLogPort {
    const inner = gated<TxLogPort>(this.log, proc, 'log');
    const world = this;
    // Observe every record the log hands back (2: one decision) and every vote write (9: deadlines).
    return new Proxy(inner, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return async (...args: unknown[]) => {
          const before = key === 'recordVote' ? world.log.peek(args[0] as string) : undefined;
          const result = (await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)) as { applied?: boolean; record?: TxRecord } | TxRecord | undefined;
          const record = result && typeof result === 'object' && 'applied' in result ? result.record : (result as TxRecord | undefined);
          if (record && typeof record === 'object' && 'txId' in record) world.decisions.see(record);
          if (key === 'recordVote' && result && typeof result === 'object' && 'applied' in result && result.applied && result.record) {
            world.violations.push(...checkVoteTiming(result.record, before, args[1] as string, Date.parse((args[2] as { at: string }).at)));
          }
          return result;
        };
      },
    });
  }

  private workflow(proc: Proc): WorkflowPort {
    return gated<WorkflowPort>(this.sfn, proc, 'sfn');
  }

  private queues(proc: Proc): ParticipantQueuesPort {
    const inner = gated<ParticipantQueuesPort>(new MemoryParticipantQueues(Object.fromEntries(this.requestQueues)), proc, 'queues');
    return {
      send: async (messages: ParticipantMessage[]) => {
        await inner.send(messages);
        for (const m of messages) {
          const queue = this.requestQueues.get(m.participant);
          if (queue) this.wake(queue);
        }
      },
      deadLetter: (messages, reason) => inner.deadLetter(messages, reason),
    };
  }

  private replies(proc: Proc): ReplySender {
    const inner = gated<ReplySender>(new MemoryReplySender(this.replyQueue), proc, 'replies');
    return {
      send: async (message: ReplyMessage) => {
        await inner.send(message);
        this.wake(this.replyQueue);
      },
    };
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

  private lockService(proc: Proc, log: TxLogPort = this.txLog(proc)): LockService {
    const store = gated<LockStorePort>(this.lockStore, proc, 'locks');
    return new LockService({
      store,
      transactions: new Transactions(log, this.workflow(proc), proc.clock),
      nowMs: proc.clock,
      random: () => this.sim.random.next(),
      sleep: proc.sleep,
      logger: quietLogger,
    });
  }

  private coordinator(proc: Proc): Coordinator {
    const log = this.txLog(proc);
    return new Coordinator({
      config: { ...coordinatorConfig('sim-log', this.scenario.services), stateMachineArn: this.stateMachineArn },
      log,
      queues: this.queues(proc),
      workflow: this.workflow(proc),
      locks: this.lockService(proc, log),
      now: proc.clock,
      newId: () => this.id('tx'),
    });
  }

  private runner(proc: Proc, service: string): ParticipantRunner {
    const decisions: DecisionSourcePort | undefined = this.scenario.inquiry
      ? { read: async (txId) => decisionOf(await this.txLog(proc).get(txId)) }
      : undefined;
    return createRunner({
      participant: this.shop.participants.get(service)!,
      barrierStore: gated(this.barriers.get(service)!, proc, `barrier:${service}`),
      replies: this.replies(proc),
      locks: this.lockService(proc),
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

  private invokeDispatch(functionArn: string, payload: unknown): Promise<unknown> {
    if (functionArn !== WORKFLOW_DISPATCH_ARN) return Promise.reject(Object.assign(new Error(`unknown function ${functionArn}`), { name: 'Lambda.ResourceNotFoundException' }));
    return this.invoke('dispatch', this.hosts.dispatch, LAMBDA_TIMEOUT_MS, (proc) => dispatchTask(this.coordinator(proc), payload, quietLogger));
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
        reject(Object.assign(new Error(`${name} crashed`), { name: 'Lambda.Unknown' }));
      };
      const timer = this.sim.after(timeoutMs, () => {
        if (proc.finished || proc.dead) return;
        this.sim.kill(proc, 'timed out');
      });
    });
  }

  /** An assertion inside the product is a violation, whatever else the error means. */
  private noteProductError(where: string, error: unknown): void {
    const name = error instanceof Error ? error.name : '';
    if (name === 'ProtocolViolationError' || name === 'TransitionError' || name === 'AssertionError') {
      this.violations.push(`product assertion in ${where}: ${describeError(error)}`);
    }
  }

  private async dynamoTask(operation: string, parameters: Record<string, unknown>): Promise<unknown> {
    // DynamoDB answers after a moment; it is AWS's side, so it neither crashes nor freezes.
    await new Promise<void>((resolve) => this.sim.after(this.sim.random.int(0, 5), resolve));
    try {
      return await stepFunctionsDynamoTask(this.log, operation, parameters);
    } catch (err) {
      this.noteProductError('the state machine', err);
      throw err;
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
    const isReply = queue === this.replyQueue;
    const batch = queue.receive(isReply ? 10 : 1, VISIBILITY_MS);
    if (batch.length === 0) {
      const next = queue.nextVisibleAt();
      if (next !== undefined) this.sim.at(next, () => this.wake(queue));
      return;
    }
    const service = isReply ? undefined : [...this.requestQueues].find(([, q]) => q === queue)![0];
    const run = isReply
      ? this.invoke('reply', this.hosts.reply, LAMBDA_TIMEOUT_MS, (proc) => replyBatch(this.coordinator(proc), batch.map((m) => ({ messageId: m.messageId, body: m.body })), quietLogger))
      : this.invoke(`participant:${service}`, this.participantHosts.get(service!)!, PARTICIPANT_TIMEOUT_MS, async (proc) => {
          await this.runner(proc, service!).handleBody(batch[0]!.body);
          return { batchItemFailures: [] as { itemIdentifier: string }[] };
        });
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
    for (let i = 0; i < scenario.transactions; i++) sim.at(sim.random.int(0, scenario.startWindowMs), () => this.startOne());
    sim.at(scenario.healAtMs, () => this.heal());
    this.every(SWEEP_EVERY_MS, 'sweeper', this.hosts.sweeper, (proc) =>
      sweep({ log: this.txLog(proc), workflow: this.workflow(proc), now: proc.clock }, { stateMachineArn: this.stateMachineArn, staleMs: STALE_MS }),
    );
    this.every(DETECT_EVERY_MS, 'detector', this.hosts.detector, (proc) => this.detect(proc));
    if (scenario.inquiry) {
      for (const service of scenario.services) {
        this.every(INQUIRE_EVERY_MS, `inquiry:${service}`, this.participantHosts.get(service)!, (proc) => this.inquire(proc, service));
      }
    }
    if (scenario.executionsLostPerSec > 0) this.every(1_000, 'sfn-chaos', this.hosts.sweeper, async () => {
      if (!this.healed && sim.random.chance(scenario.executionsLostPerSec)) {
        sim.log('Step Functions loses every execution');
        this.sfn.crash();
      }
    });

    const deadline = scenario.healAtMs + scenario.boundAfterHealMs;
    try {
      await sim.runUntil(deadline, () => this.healed && this.settled());
    } catch (err) {
      if (!(err instanceof Livelock)) throw err;
      this.violations.push(`termination: ${err.message}`);
    }
    // Every record, not only those whose client heard back: a start that crashed after the write runs too.
    const records = new Map(this.log.records().map((r) => [r.txId, r]));
    for (const txId of records.keys()) this.started.add(txId);
    this.violations.push(...this.decisions.violations);
    this.violations.push(...checkFinal(records, this.shop, this.started, this.options.strictBarrier));
    const resourcesOf = (txId: string, service: string): string[] =>
      ((records.get(txId)?.participants.find((p) => p.service === service)?.operation as ModelOperation | undefined)?.items ?? []).map((i) => i.resource);
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
        virtualMs: sim.now,
      },
      ...(sim.trace ? { trace: sim.trace } : {}),
    };
  }

  private settled(): boolean {
    if (this.log.openCount() > 0) return false;
    for (const stock of this.shop.stock.values()) if (stock.holds.size > 0) return false;
    return this.pendingStarts === 0;
  }

  private pendingStarts = 0;

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
    const participants = members.map((service) => {
      const count = r.int(1, resourcesPerService);
      const resources = Array.from({ length: resourcesPerService }, (_, i) => `r${i}`);
      // A random order of a random subset: transactions lock in different orders, so they can deadlock.
      const items = Array.from({ length: count }, () => ({ resource: resources.splice(r.int(0, resources.length - 1), 1)[0]!, amount: r.int(1, 4) }));
      const operation: ModelOperation = { items, ...(r.chance(0.1) ? { refuse: true } : {}) };
      return { service, operation };
    });
    const body = { participants, timeouts: { prepareSeconds: r.int(1, 10), commitSeconds: r.int(2, 30) } };
    const key = this.scenario.idempotentClients ? this.id('key') : undefined;
    const attempt = (n: number): void => {
      this.pendingStarts++;
      this.invoke('api', this.hosts.api, LAMBDA_TIMEOUT_MS, (proc) => this.coordinator(proc).start(body, key)).then(
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
          // (a record may exist that it never heard of; recovery must end it too).
          if (key !== undefined && n < 5) this.sim.after(this.sim.random.int(100, 2_000), () => attempt(n + 1));
        },
      );
    };
    attempt(1);
  }

  /** Someone outside the state machine decides ABORT (the lock service's takeover path, an operator). */
  private abortFromOutside(txId: string): void {
    this.sim.run('aborter', this.hosts.detector, (proc) => new Transactions(this.txLog(proc), this.workflow(proc), proc.clock).abort(txId, 'aborted from outside'), (outcome) => {
      if (!outcome.ok) this.noteProductError('aborter', outcome.error);
    });
  }

  private async detect(proc: Proc): Promise<void> {
    const log = this.txLog(proc);
    const store = gated<LockStorePort>(this.lockStore, proc, 'locks');
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
    const detector = new DeadlockDetector({ store: observed, transactions: new Transactions(log, this.workflow(proc), proc.clock), nowMs: proc.clock, logger: quietLogger });
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
