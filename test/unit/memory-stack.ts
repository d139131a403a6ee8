// A coordinator over the in-memory adapters on virtual time, for unit tests of the use cases: the
// log (MemoryTxLog), the participants' request queues and dead-letter queues (MemoryQueue), and
// either the real supervisor state machine (MemoryStepFunctions running workflowDefinition(), whose
// Supervise task runs superviseRun) or a recording WorkflowPort that starts nothing. The clock and
// the ids are injected: a test moves time with `timers.advanceTo`. Not a test file.
import { Coordinator } from '../../src/coordinator';
import type { ExecutionState } from '../../src/core/recovery';
import type { ParticipantMessage, ReplyMessage, Vote } from '../../src/core/messages';
import type { TxLogPort, WorkflowPort } from '../../src/core/ports';
import { DEFAULT_SUPERVISION, type SupervisionSettings, type TxRecord } from '../../src/core/transaction';
import { executionArn } from '../../src/aws/workflow';
import { WORKFLOW_SUPERVISE_ARN, workflowDefinition } from '../../src/memory/definition';
import { MemoryDecisionEvents } from '../../src/memory/events';
import { MemoryTxLog } from '../../src/memory/log';
import { MemoryParticipantQueues, MemoryQueue } from '../../src/memory/sqs';
import { MemoryStepFunctions } from '../../src/memory/stepfunctions';
import { VirtualTimers } from '../../src/memory/timers';
import { type SupervisorRun, superviseRun, supervisorState } from '../../src/supervisor';
import { coordinatorConfig } from '../support/fixtures';
import type { LockService } from '../../src/locks/service';

export const SERVICES = ['inventory', 'payment', 'shipping', 'order'];
/** A time at the start of a 10-second bucket. */
export const T0 = Date.UTC(2026, 10, 27, 12, 0, 0);
export const iso = (ms: number): string => new Date(ms).toISOString();

/** A WorkflowPort that records starts and starts nothing: for tests of the coordinator without supervision. */
export class RecordingWorkflow implements WorkflowPort {
  readonly starts: { stateMachineArn: string; name: string; input: unknown }[] = [];
  private readonly running = new Map<string, string>();

  async start(stateMachineArn: string, name: string, input: unknown): Promise<'started' | 'exists'> {
    this.starts.push({ stateMachineArn, name, input });
    const known = this.running.get(name);
    if (known === undefined) this.running.set(name, JSON.stringify(input));
    return known === undefined || known === JSON.stringify(input) ? 'started' : 'exists';
  }

  async describe(arn: string): Promise<ExecutionState> {
    return this.running.has(arn.slice(arn.lastIndexOf(':') + 1)) ? 'RUNNING' : 'MISSING';
  }
}

export interface StackOptions {
  services?: readonly string[];
  /** Run the real supervisor state machine (default), or record starts only. */
  supervise?: boolean;
  supervision?: SupervisionSettings;
  /** The log to use (a wrapper of MemoryTxLog, say); a fresh MemoryTxLog by default. */
  log?: MemoryTxLog;
  /** Transaction ids (default `tx-00000001`, `tx-00000002`, ...). */
  newId?: () => string;
  /** The lock service for declared resources (none by default). */
  locks?: LockService;
  /** Publish `Transaction Finished` too (context `finishEvents`; off by default, as deployed). */
  finishEvents?: boolean;
}

export interface StartBody {
  participants: { service: string; operation?: unknown; resources?: string[] }[];
  timeouts?: { prepareSeconds?: number; commitSeconds?: number };
}

export function memoryStack(options: StackOptions = {}) {
  const services = [...(options.services ?? SERVICES)];
  const timers = new VirtualTimers(T0);
  const now = (): number => timers.now();
  const log = options.log ?? new MemoryTxLog();
  const requests = Object.fromEntries(services.map((s) => [s, new MemoryQueue(`${s}-requests`, { clock: now })]));
  const deadLetters = Object.fromEntries(services.map((s) => [s, new MemoryQueue(`${s}-requests-dlq`, { clock: now })]));
  const replyDeadLetters = new MemoryQueue('replies-dlq', { clock: now });
  const queues = new MemoryParticipantQueues(requests, deadLetters, replyDeadLetters);
  const runs: SupervisorRun[] = [];
  const events = new MemoryDecisionEvents();
  const deps = { log: log as TxLogPort, now };
  let coordinator: Coordinator | undefined;
  const sfn = new MemoryStepFunctions({
    timers,
    random: () => 0.5,
    handlers: {
      lambda: async (fn, payload) => {
        if (fn !== WORKFLOW_SUPERVISE_ARN) throw new Error(`no function ${fn}`);
        const run = await superviseRun(coordinator!, { ...deps, workflow: sfn, stateMachineArn }, supervisorState.parse(payload));
        runs.push(run);
        return run as unknown as import('../../src/memory/stepfunctions').Json;
      },
      dynamodb: async () => {
        throw new Error('the supervisor has no DynamoDB task');
      },
    },
  });
  // Synthesizing the definition takes seconds: only when the supervisors run.
  const stateMachineArn =
    options.supervise === false ? 'arn:aws:states:us-east-1:000000000000:stateMachine:dtc-supervisor' : sfn.createStateMachine('dtc-supervisor', workflowDefinition());
  const recording = new RecordingWorkflow();
  const workflow: WorkflowPort = options.supervise === false ? recording : sfn;
  let ids = 0;
  /** A coordinator over this stack's log, queues and clock (another api instance, with `overrides`). */
  const newCoordinator = (overrides: { workflow?: WorkflowPort; supervision?: SupervisionSettings; newId?: () => string } = {}): Coordinator =>
    new Coordinator({
      config: {
        ...coordinatorConfig('log', services),
        stateMachineArn,
        supervision: overrides.supervision ?? options.supervision ?? DEFAULT_SUPERVISION,
        ...(options.finishEvents ? { finishEvents: true } : {}),
      },
      log,
      queues,
      workflow: overrides.workflow ?? workflow,
      events,
      now,
      newId: overrides.newId ?? options.newId ?? (() => `tx-${String(++ids).padStart(8, '0')}`),
      ...(options.locks ? { locks: options.locks } : {}),
    });
  coordinator = newCoordinator();

  /** Every message a queue holds now, oldest first, taken off it (received and deleted). */
  const drain = (queue: MemoryQueue): { body: string; sentAtMs: number; attributes: Record<string, { StringValue: string }> }[] => {
    const out: { body: string; sentAtMs: number; attributes: Record<string, { StringValue: string }> }[] = [];
    for (;;) {
      const batch = queue.receive(10);
      if (batch.length === 0) return out;
      for (const m of batch) {
        queue.delete(m.receiptHandle);
        out.push({ body: m.body, sentAtMs: m.sentAtMs, attributes: m.attributes });
      }
    }
  };

  const stack = {
    services,
    timers,
    now,
    log,
    queues,
    requests,
    deadLetters,
    replyDeadLetters,
    sfn,
    stateMachineArn,
    recording,
    /** The decision events the coordinator took (`pending`) and flushed (`published`). */
    events,
    coordinator: coordinator,
    newCoordinator,
    /** Every run of every supervisor, in order. */
    runs,
    supervisorDeps: { ...deps, workflow, stateMachineArn },
    body(members: readonly string[] = services, timeouts: StartBody['timeouts'] = { prepareSeconds: 10, commitSeconds: 30 }): StartBody {
      return { participants: members.map((service) => ({ service, operation: { for: service } })), timeouts };
    },
    /** Start a transaction; answers its id. */
    async start(body: StartBody = stack.body(), idempotencyKey?: string): Promise<string> {
      const outcome = await coordinator!.start(body, idempotencyKey);
      if (outcome.kind !== 'started') throw new Error(`start answered ${JSON.stringify(outcome)}`);
      return outcome.txId;
    },
    /** The messages sent to a participant's request queue since the last take, with when each was sent. */
    take(service: string): (ParticipantMessage & { sentAtMs: number })[] {
      return drain(requests[service]!).map((m) => ({ ...(JSON.parse(m.body) as ParticipantMessage), sentAtMs: m.sentAtMs }));
    },
    /** take() for every participant: service -> message types sent to it. */
    takeAll(): Record<string, string[]> {
      return Object.fromEntries(services.map((s) => [s, stack.take(s).map((m) => `${m.type}:${m.txId}`)]));
    },
    /** The copies in a participant's request DLQ (in-doubt copies), taken off it. */
    takeDeadLetters(service: string) {
      return drain(deadLetters[service]!).map((m) => ({ message: JSON.parse(m.body) as ParticipantMessage, reason: m.attributes['dtc-reason']?.StringValue }));
    },
    /** The refused replies in the reply DLQ, taken off it. */
    takeRefused() {
      return drain(replyDeadLetters).map((m) => ({ body: m.body, reason: m.attributes['dtc-reason']?.StringValue, owner: m.attributes['dtc-participant']?.StringValue }));
    },
    vote(txId: string, participant: string, vote: Vote, reason?: string): Promise<void> {
      return coordinator!.onReply({ v: 1, type: 'VOTE', txId, participant, vote, ...(reason === undefined ? {} : { reason }) });
    },
    ack(txId: string, participant: string, phase: 'COMMIT' | 'ABORT'): Promise<void> {
      return coordinator!.onReply({ v: 1, type: 'ACK', txId, participant, phase });
    },
    reply(message: ReplyMessage): Promise<void> {
      return coordinator!.onReply(message);
    },
    record(txId: string): TxRecord {
      const r = log.peek(txId);
      if (!r) throw new Error(`no record ${txId}`);
      return r;
    },
    /** A supervisor execution's status by its name, or MISSING. */
    supervisor(name: string): ExecutionState {
      return sfn.execution(executionArn(stateMachineArn, name))?.status ?? 'MISSING';
    },
    /** The ARN a participant's reply queue has in these tests. */
    replyArn(service: string): string {
      return `arn:aws:sqs:us-east-1:000000000000:dtc-${service}-replies`;
    },
  };
  return stack;
}

export type MemoryStack = ReturnType<typeof memoryStack>;
