// The coordinator's side of two-phase commit, as pure functions over the transaction log record.
// No I/O and no clock: callers pass `now` in. Everything the Lambdas decide is decided here.
import { mutated } from './mutations';
import { z } from 'zod';
import { resourceName } from './locks';
import { serviceName, type Vote } from './messages';

export const TX_STATUSES = ['PREPARING', 'COMMITTING', 'ABORTING', 'COMMITTED', 'ABORTED'] as const;
export type TxStatus = (typeof TX_STATUSES)[number];
export type Outcome = 'COMMIT' | 'ABORT';
export type Phase = 'PREPARE' | 'COMMIT' | 'ABORT';

/** The status a record has while a phase runs, and back: the one mapping between phases and statuses. */
export const PHASE_STATUS = { PREPARE: 'PREPARING', COMMIT: 'COMMITTING', ABORT: 'ABORTING' } as const satisfies Record<Phase, TxStatus>;
/** The statuses of an open transaction (one per phase). */
export type OpenStatus = (typeof PHASE_STATUS)[Phase];
export const STATUS_PHASE = { PREPARING: 'PREPARE', COMMITTING: 'COMMIT', ABORTING: 'ABORT' } as const satisfies Record<OpenStatus, Phase>;

/** Bounds on per-transaction timeouts. Out-of-bounds values are rejected (400), never clamped. */
export const TIMEOUT_BOUNDS = {
  prepareSeconds: { min: 1, max: 900, default: 10 },
  commitSeconds: { min: 1, max: 3600, default: 30 },
} as const;

export const MAX_PARTICIPANTS = 25;
/** Resources one participant may declare for the coordinator to lock (each lock is ~3 requests in dispatch). */
export const MAX_DECLARED_RESOURCES = 25;

/** The declared resources of every participant, deduplicated and sorted: the one order all coordinators lock in. */
export function declaredResources(tx: Pick<TxRecord, 'participants'>): string[] {
  return [...new Set(tx.participants.flatMap((p) => p.resources ?? []))].sort();
}
export const MAX_BODY_BYTES = 256 * 1024;

export interface ParticipantSpec {
  service: string;
  operation: unknown;
  /** Resources the coordinator locks (exclusively, in sorted order) for the transaction before PREPARE. */
  resources?: string[];
}

export interface VoteEntry {
  vote: Vote;
  reason?: string;
  at: string;
}

export interface AckEntry {
  phase: 'COMMIT' | 'ABORT';
  at: string;
}

/** The durable log record of one transaction (one DynamoDB item, key `pk` = txId). */
export interface TxRecord {
  pk: string;
  txId: string;
  status: TxStatus;
  participants: ParticipantSpec[];
  votes: Record<string, VoteEntry>;
  acks: Record<string, AckEntry>;
  timeouts: { prepareSeconds: number; commitSeconds: number };
  createdAt: string;
  updatedAt: string;
  /** Epoch ms: no vote is waited for after this. */
  prepareDeadlineAt: number;
  decision?: Outcome;
  decisionReason?: string;
  decidedAt?: string;
  finishedAt?: string;
  /** The current phase's Step Functions task token, and the phase it belongs to. */
  taskToken?: string;
  taskPhase?: Phase;
  /** Constant partition of the listing index (`byCreated`). */
  listPk: 'tx';
  /** Present only while the transaction is open: the sparse index `open` holds open transactions. */
  openPk?: 'open';
  /** Epoch seconds, set by Finalize only: DynamoDB TTL removes finished records after retention.
   *  Open records have none, so TTL can never remove a transaction that is still running. */
  expiresAt?: number;
  idempotencyKey?: string;
  requestHash: string;
  /** The execution driving the record now: the txId at first, `<txId>-r<n>` after the n-th recovery. */
  executionName?: string;
  /** How many recovery executions were started; the sweeper's claim is conditional on it. */
  recoveries?: number;
  /** Dispatch attempts per phase (every task attempt, recoveries included). */
  prepareAttempts?: number;
  commitAttempts?: number;
  abortAttempts?: number;
  /**
   * Participant -> when phase two first found it in doubt (IN_DOUBT_AFTER_ATTEMPTS sends without an
   * ACK). Written once per transaction by dispatch; kept after the ACK as the log of what happened.
   */
  inDoubtSince?: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------
// Start request

const timeoutField = (bounds: { min: number; max: number }) =>
  z
    .number({ error: 'must be a number of seconds' })
    .int('must be a whole number of seconds')
    .min(bounds.min, `must be at least ${bounds.min}`)
    .max(bounds.max, `must be at most ${bounds.max}`);

export interface TimeoutDefaults {
  prepareSeconds: number;
  commitSeconds: number;
}

export const DEFAULT_TIMEOUTS: TimeoutDefaults = {
  prepareSeconds: TIMEOUT_BOUNDS.prepareSeconds.default,
  commitSeconds: TIMEOUT_BOUNDS.commitSeconds.default,
};

/** The body of `POST /transactions`; omitted timeouts take the deployment's defaults. */
export function startRequestSchema(defaults: TimeoutDefaults = DEFAULT_TIMEOUTS) {
  return z.strictObject({
    participants: z
      .array(
        z.strictObject({
          service: serviceName,
          operation: z.unknown().default({}),
          resources: z.array(resourceName).max(MAX_DECLARED_RESOURCES, `must name at most ${MAX_DECLARED_RESOURCES} resources`).optional(),
        }),
      )
      .min(1, 'must name at least one participant')
      .max(MAX_PARTICIPANTS, `must name at most ${MAX_PARTICIPANTS} participants`),
    timeouts: z
      .strictObject({
        prepareSeconds: timeoutField(TIMEOUT_BOUNDS.prepareSeconds).default(defaults.prepareSeconds),
        commitSeconds: timeoutField(TIMEOUT_BOUNDS.commitSeconds).default(defaults.commitSeconds),
      })
      .default({ ...defaults }),
  });
}
export type StartRequest = z.infer<ReturnType<typeof startRequestSchema>>;

export interface FieldError {
  field: string;
  message: string;
}

/** Validate a parsed JSON body against the schema and the configured participant services. */
export function validateStartRequest(
  body: unknown,
  knownServices: readonly string[],
  defaults: TimeoutDefaults = DEFAULT_TIMEOUTS,
): { ok: true; value: StartRequest } | { ok: false; errors: FieldError[] } {
  const parsed = startRequestSchema(defaults).safeParse(body);
  // Service names are checked on the raw body too, so one answer names every bad field at once
  // (an unknown service beside a bad timeout, say).
  const raw = typeof body === 'object' && body !== null ? (body as { participants?: unknown }).participants : undefined;
  const services = Array.isArray(raw) ? raw.map((p) => (typeof p === 'object' && p !== null && typeof (p as { service?: unknown }).service === 'string' ? (p as { service: string }).service : undefined)) : [];
  const serviceErrors = checkServices(services, knownServices);
  if (!parsed.success) {
    const schemaErrors = parsed.error.issues.map((i) => ({ field: i.path.join('.') || '(body)', message: i.message }));
    const named = new Set(schemaErrors.map((e) => e.field));
    return { ok: false, errors: [...schemaErrors, ...serviceErrors.filter((e) => !named.has(e.field))] };
  }
  return serviceErrors.length > 0 ? { ok: false, errors: serviceErrors } : { ok: true, value: parsed.data };
}

/** Each named service must be known, and named once; `undefined` entries are the schema's to report. */
function checkServices(services: (string | undefined)[], knownServices: readonly string[]): FieldError[] {
  const errors: FieldError[] = [];
  const seen = new Set<string>();
  services.forEach((service, i) => {
    if (service === undefined) return;
    if (!knownServices.includes(service)) {
      errors.push({ field: `participants.${i}.service`, message: `unknown service '${service}' (known: ${knownServices.join(', ')})` });
    }
    if (seen.has(service)) errors.push({ field: `participants.${i}.service`, message: `service '${service}' is named twice` });
    seen.add(service);
  });
  return errors;
}

export interface NewTxInput {
  txId: string;
  request: StartRequest;
  nowMs: number;
  requestHash: string;
  idempotencyKey?: string;
}

/** The first log record of a transaction, written with `attribute_not_exists(pk)`. */
export function newTransaction({ txId, request, nowMs, requestHash, idempotencyKey }: NewTxInput): TxRecord {
  const now = new Date(nowMs).toISOString();
  return {
    pk: txId,
    txId,
    status: 'PREPARING',
    participants: request.participants.map((p) => ({
      service: p.service,
      operation: p.operation,
      ...(p.resources && p.resources.length > 0 ? { resources: p.resources } : {}),
    })),
    votes: {},
    acks: {},
    timeouts: request.timeouts,
    createdAt: now,
    updatedAt: now,
    prepareDeadlineAt: nowMs + request.timeouts.prepareSeconds * 1000,
    listPk: 'tx',
    openPk: 'open',
    requestHash,
    executionName: txId,
    ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
  };
}

/** The state machine's input. Everything else is read from the log record by transaction id. */
export interface ExecutionInput {
  txId: string;
  timeouts: { prepareSeconds: number; commitSeconds: number };
  /**
   * Set by recovery only, for whoever reads the execution's input: the phase the log recorded. The
   * state machine itself always starts in Prepare, whose dispatch answers at once with the decision
   * the log holds, so a resumed execution routes to Commit or Abort through the Decide step's
   * condition (see cdk/workflow.ts).
   */
  resumeFrom?: Phase;
}

export function executionInput(tx: Pick<TxRecord, 'txId' | 'timeouts'>): ExecutionInput {
  return { txId: tx.txId, timeouts: tx.timeouts };
}

// ---------------------------------------------------------------------------------------------
// Phase one: votes

export interface PrepareResult {
  outcome: Outcome;
  /** The status the Decide step writes. */
  status: 'COMMITTING' | 'ABORTING';
  reason: string;
}

/** Tally the votes. Undecided until every participant voted YES/READ_ONLY, or any voted NO. */
export function tally(tx: Pick<TxRecord, 'participants' | 'votes'>): PrepareResult | undefined {
  const no = tx.participants.find((p) => tx.votes[p.service]?.vote === 'NO');
  if (no) {
    const reason = tx.votes[no.service]?.reason;
    return { outcome: 'ABORT', status: 'ABORTING', reason: `${no.service} voted NO${reason ? `: ${reason}` : ''}` };
  }
  const allIn = mutated('commitWithoutEveryYes') ? tx.participants.some((p) => tx.votes[p.service] !== undefined) : tx.participants.every((p) => tx.votes[p.service] !== undefined);
  if (allIn) {
    return { outcome: 'COMMIT', status: 'COMMITTING', reason: 'every participant voted YES' };
  }
  return undefined;
}

/**
 * After `voter`'s vote was recorded (the conditional write succeeded), should this writer wake the
 * execution, and with what? Exactly one vote write per transaction answers non-undefined: the first
 * NO, or the last vote when there is no NO. That is what makes one callback per phase.
 */
export function signalAfterVote(after: Pick<TxRecord, 'participants' | 'votes'>, voter: string): PrepareResult | undefined {
  const result = tally(after);
  if (!result) return undefined;
  const noVoters = after.participants.filter((p) => after.votes[p.service]?.vote === 'NO').map((p) => p.service);
  if (result.outcome === 'ABORT') {
    // First NO: the only NO so far is this voter's.
    return noVoters.length === 1 && noVoters[0] === voter ? result : undefined;
  }
  return result; // COMMIT: this write completed the set (a set completes once).
}

/** Participants that have not voted yet: the ones PREPARE is (re)sent to. */
export function awaitingVote(tx: Pick<TxRecord, 'participants' | 'votes'>): ParticipantSpec[] {
  return tx.participants.filter((p) => tx.votes[p.service] === undefined);
}

// ---------------------------------------------------------------------------------------------
// Phase two: acknowledgements

export interface PhaseTwoResult {
  from: 'COMMITTING' | 'ABORTING';
  final: 'COMMITTED' | 'ABORTED';
  /** Epoch seconds for the TTL attribute, written by Finalize (finish time + retention). */
  expiresAt: number;
}

/**
 * Participants whose acknowledgement phase two waits for, and so who is (re)sent its message: on
 * COMMIT those that voted YES (they hold prepared state); on ABORT also every participant whose vote
 * was never recorded, since it may have prepared all the same (its YES was lost, or came after the
 * deadline): one lost ABORT must not leave its hold in place forever. READ_ONLY and NO voters hold
 * nothing (a NO voter releases its own partial effects).
 */
export function awaitingAck(tx: Pick<TxRecord, 'participants' | 'votes' | 'acks' | 'decision'>): string[] {
  const mayHavePrepared = (s: string): boolean =>
    tx.votes[s]?.vote === 'YES' || (tx.decision === 'ABORT' && tx.votes[s] === undefined && !mutated('noAbortToSilent'));
  return tx.participants.map((p) => p.service).filter((s) => tx.acks[s] === undefined && mayHavePrepared(s));
}

export function phaseTwoResult(status: 'COMMITTING' | 'ABORTING', nowMs: number, retentionDays: number): PhaseTwoResult {
  const expiresAt = Math.floor(nowMs / 1000) + retentionDays * 86_400;
  return status === 'COMMITTING'
    ? { from: 'COMMITTING', final: 'COMMITTED', expiresAt }
    : { from: 'ABORTING', final: 'ABORTED', expiresAt };
}

/** After an ack was recorded: the write that leaves nobody waiting wakes the execution. */
export function signalAfterAck(
  after: Pick<TxRecord, 'participants' | 'votes' | 'acks' | 'status' | 'decision'>,
  nowMs: number,
  retentionDays: number,
): PhaseTwoResult | undefined {
  if (after.status !== 'COMMITTING' && after.status !== 'ABORTING') return undefined;
  return awaitingAck(after).length === 0 ? phaseTwoResult(after.status, nowMs, retentionDays) : undefined;
}

// ---------------------------------------------------------------------------------------------
// Views

export interface TxView {
  txId: string;
  status: TxStatus;
  decision?: { outcome: Outcome; reason?: string; at?: string };
  participants: {
    service: string;
    vote?: Vote;
    reason?: string;
    votedAt?: string;
    ack?: 'COMMIT' | 'ABORT';
    ackedAt?: string;
    /** When phase two found this participant in doubt (it may have acknowledged since). */
    inDoubtSince?: string;
  }[];
  timeouts: { prepareSeconds: number; commitSeconds: number };
  createdAt: string;
  updatedAt: string;
  decidedAt?: string;
  finishedAt?: string;
  /** Participants phase two has been re-sent to IN_DOUBT_AFTER_ATTEMPTS times without an ACK. */
  inDoubt?: string[];
}

/**
 * Phase-two dispatch attempts after which the participants still not acknowledging are shown as in
 * doubt: the decision exists, but they have not confirmed applying it (they may be down or failing).
 */
export const IN_DOUBT_AFTER_ATTEMPTS = 3;

/** YES voters that have not acknowledged phase two after IN_DOUBT_AFTER_ATTEMPTS sends. */
export function inDoubt(tx: Pick<TxRecord, 'status' | 'decision' | 'participants' | 'votes' | 'acks' | 'commitAttempts' | 'abortAttempts'>): string[] {
  const attempts = tx.status === 'COMMITTING' ? tx.commitAttempts : tx.status === 'ABORTING' ? tx.abortAttempts : undefined;
  if (attempts === undefined || attempts < IN_DOUBT_AFTER_ATTEMPTS) return [];
  return awaitingAck(tx);
}

export function toView(tx: TxRecord): TxView {
  const doubtful = inDoubt(tx);
  return {
    txId: tx.txId,
    status: tx.status,
    ...(doubtful.length > 0 ? { inDoubt: doubtful } : {}),
    ...(tx.decision ? { decision: { outcome: tx.decision, reason: tx.decisionReason, at: tx.decidedAt } } : {}),
    participants: tx.participants.map((p) => {
      const v = tx.votes[p.service];
      const a = tx.acks[p.service];
      const doubtedAt = tx.inDoubtSince?.[p.service];
      return {
        service: p.service,
        ...(v ? { vote: v.vote, votedAt: v.at, ...(v.reason ? { reason: v.reason } : {}) } : {}),
        ...(a ? { ack: a.phase, ackedAt: a.at } : {}),
        ...(doubtedAt ? { inDoubtSince: doubtedAt } : {}),
      };
    }),
    timeouts: tx.timeouts,
    createdAt: tx.createdAt,
    updatedAt: tx.updatedAt,
    ...(tx.decidedAt ? { decidedAt: tx.decidedAt } : {}),
    ...(tx.finishedAt ? { finishedAt: tx.finishedAt } : {}),
  };
}
