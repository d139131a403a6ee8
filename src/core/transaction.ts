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
/** Resources one participant may declare for the coordinator to lock (each lock is ~3 requests in the start). */
export const MAX_DECLARED_RESOURCES = 25;

/** The declared resources of every participant, deduplicated and sorted: the one order all coordinators lock in. */
export function declaredResources(request: { participants: readonly { resources?: readonly string[] | undefined }[] }): string[] {
  return [...new Set(request.participants.flatMap((p) => p.resources ?? []))].sort();
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

/**
 * An operator's recorded decision to stop waiting for one participant's acknowledgement (a
 * participant retired for good): who, why and when. Written once per participant, never silently.
 */
export interface ReleaseEntry {
  operator: string;
  reason: string;
  at: string;
}

/**
 * The durable log record of one transaction (one DynamoDB item, key `pk` = txId): a small hot item.
 * The operations live in an item of their own, written once (`<txId>#ops`, see OpsRecord), so every
 * write to this one stays under 1 KB (an update bills the larger of the item before and after).
 */
export interface TxRecord {
  pk: string;
  txId: string;
  status: TxStatus;
  /** The members, in the request's order. */
  services: string[];
  /** Members whose vote is still pending: a vote counts only by removing its own entry here. */
  pending: Record<string, true>;
  votes: Record<string, VoteEntry>;
  /** How many YES/READ_ONLY votes COMMIT needs (every member), and how many are recorded. */
  req: number;
  ok: number;
  acks: Record<string, AckEntry>;
  timeouts: { prepareSeconds: number; commitSeconds: number };
  createdAt: string;
  updatedAt: string;
  /** Epoch ms: no vote is recorded at or after this, and an undecided transaction is aborted then. */
  prepareDeadlineAt: number;
  decision?: Outcome;
  decisionReason?: string;
  decidedAt?: string;
  finishedAt?: string;
  /** The declared resources the coordinator locks for the transaction, sorted (absent when none). */
  resources?: string[];
  /** The listing shard: partition key of the `byCreated` index (sort key `createdAt`, written once). */
  lp: string;
  /**
   * The supervision group while the transaction is open: partition key of the sparse `open` index
   * (sort key `prepareDeadlineAt`, written once). Removed when the transaction finishes; changed
   * once if its phase two is parked with a participant's supervisor.
   */
  og?: string;
  /** Epoch seconds, set when the transaction finishes: DynamoDB TTL removes it after retention. */
  expiresAt?: number;
  idempotencyKey?: string;
  requestHash: string;
  /**
   * When supervision found the participants still owing an acknowledgement in doubt (phase two
   * unacknowledged for IN_DOUBT_AFTER_COMMIT_TIMEOUTS commit timeouts). Written once; one time for
   * all of them (they are marked together), so the record stays small.
   */
  inDoubtSince?: string;
  /** The participant whose outage parked this transaction's phase two with its own supervisor. */
  parkedWith?: string;
  /** Participants an operator released from phase two's wait (absent until the first release). */
  releases?: Record<string, ReleaseEntry>;
}

/** The operations of a transaction, written once beside its record (`pk` = `<txId>#ops`), as JSON text. */
export interface OpsRecord {
  pk: string;
  /** The validated request's participants, JSON text (any JSON number survives, unlike a DynamoDB number). */
  participants: string;
  expiresAt: number;
}

export const opsPk = (txId: string): string => `${txId}#ops`;

/** A vote's or decision's reason as the record keeps it: short, so the record stays small. */
export const RECORDED_REASON_CHARS = 120;
export function recordedReason(reason: string): string {
  return reason.length <= RECORDED_REASON_CHARS ? reason : `${reason.slice(0, RECORDED_REASON_CHARS - 1)}…`;
}

// ---------------------------------------------------------------------------------------------
// Sharding: the listing index and supervision groups

/** FNV-1a over the id's UTF-16 code units: a stable, uniform spread of ids over shards. Pure. */
export function shardOf(id: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % shards;
}

/**
 * Shards of the listing index: each takes one write per start, so 32 carry 32,000 starts/s under the
 * 1,000 write units/s a partition key value takes. GET /transactions reads them all and merges newest first.
 */
export const LIST_SHARDS = 32;

/**
 * A record's slot says which listing shard and which supervision shard it goes to (the slot modulo
 * each count); it is written into the record (`lp`, `og`) and never computed again. The coordinator
 * deals slots in turn from a counter of its own (`Coordinator.start`), so each api instance spreads
 * its starts evenly over the shards at any rate: a hash spreads them evenly only on average, and
 * the busiest key of a short bucket takes well over its share (1.6 times, measured at 8 starts/s).
 * A record nobody dealt a slot to takes its id's hash.
 */
export const idSlot = (txId: string): number => shardOf(txId, 2 ** 31);
export const listShard = (slot: number): string => `l${slot % LIST_SHARDS}`;

export interface SupervisionSettings {
  /** Groups per time bucket (spreads the `open` index's writes over this many key values). */
  shards: number;
  /** Length of a group's creation-time bucket. */
  bucketSeconds: number;
}

export const DEFAULT_SUPERVISION: SupervisionSettings = { shards: 8, bucketSeconds: 10 };

/**
 * A group is defined by content, written into the record once (`og`): the bucket of creation time and
 * the record's slot's shard. Its name is its supervisor's execution name.
 */
export function supervisionGroup(slot: number, createdMs: number, s: SupervisionSettings): string {
  const start = Math.floor(createdMs / 1000 / s.bucketSeconds) * s.bucketSeconds;
  return `g-${start}-${s.bucketSeconds}-${slot % s.shards}`;
}

/** The group that holds the parked phase two of transactions waiting on one participant. */
export const parkingGroup = (service: string): string => `park-${service}`;

export type GroupInfo = { kind: 'bucket'; closesAt: number } | { kind: 'park'; service: string };

/** What a group name says: a bucket's groups close (take no new members) at the end of the bucket. */
export function groupInfo(group: string): GroupInfo {
  const bucket = /^g-(\d+)-(\d+)-(\d+)$/.exec(group);
  if (bucket) return { kind: 'bucket', closesAt: (Number(bucket[1]) + Number(bucket[2])) * 1000 };
  const park = /^park-([a-z][a-z0-9-]{0,39})$/.exec(group);
  if (park) return { kind: 'park', service: park[1]! };
  throw new Error(`not a supervision group: ${group}`);
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

const schemas = new Map<string, ReturnType<typeof buildStartRequestSchema>>();

/** The body of `POST /transactions`; omitted timeouts take the deployment's defaults. Built once per set of defaults. */
export function startRequestSchema(defaults: TimeoutDefaults = DEFAULT_TIMEOUTS): ReturnType<typeof buildStartRequestSchema> {
  const key = `${defaults.prepareSeconds}/${defaults.commitSeconds}`;
  let schema = schemas.get(key);
  if (!schema) schemas.set(key, (schema = buildStartRequestSchema(defaults)));
  return schema;
}

function buildStartRequestSchema(defaults: TimeoutDefaults) {
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
export type StartRequest = z.infer<ReturnType<typeof buildStartRequestSchema>>;

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
  supervision: SupervisionSettings;
  /** Where the record is dealt (`idSlot`); its id's hash when absent. */
  slot?: number;
  idempotencyKey?: string;
}

/** The first log record of a transaction, written with `attribute_not_exists(pk)`. */
export function newTransaction({ txId, request, nowMs, requestHash, supervision, slot = idSlot(txId), idempotencyKey }: NewTxInput): TxRecord {
  const now = new Date(nowMs).toISOString();
  const services = request.participants.map((p) => p.service);
  const resources = declaredResources(request);
  return {
    pk: txId,
    txId,
    status: 'PREPARING',
    services,
    pending: Object.fromEntries(services.map((s) => [s, true as const])),
    votes: {},
    req: services.length,
    ok: 0,
    acks: {},
    timeouts: request.timeouts,
    createdAt: now,
    updatedAt: now,
    prepareDeadlineAt: nowMs + request.timeouts.prepareSeconds * 1000,
    lp: listShard(slot),
    og: supervisionGroup(slot, nowMs, supervision),
    requestHash,
    ...(resources.length > 0 ? { resources } : {}),
    ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
  };
}

/** The operations item of a new transaction: it outlives any record it can belong to by the retention. */
export function newOps(txId: string, request: StartRequest, nowMs: number, retentionDays: number): OpsRecord {
  return { pk: opsPk(txId), participants: JSON.stringify(request.participants), expiresAt: keptUntil(nowMs, retentionDays) };
}
/**
 * Beyond the retention, how long the items written beside a record (its operations, its idempotency
 * key) are kept. Supervision renews them every OPS_EXTRA_DAYS while the transaction stays open
 * (`keepAliveDue` in recovery.ts), and finishing pushes the key past the record's own expiry, so
 * both always outlive the record.
 */
export const OPS_EXTRA_DAYS = 30;

/** Epoch seconds until which an item written beside a record at `nowMs` is kept: retention + OPS_EXTRA_DAYS. */
export function keptUntil(nowMs: number, retentionDays: number): number {
  return Math.floor(nowMs / 1000) + (retentionDays + OPS_EXTRA_DAYS) * 86_400;
}

// ---------------------------------------------------------------------------------------------
// Phase one: votes and the decision

export interface Decision {
  outcome: Outcome;
  reason: string;
}

/**
 * What the record says must happen now, if anything: COMMIT once every member's YES is recorded
 * (the record's own count against its own number of members), ABORT once a NO is. Undefined while
 * votes are missing. The conditional writes of log-transitions.ts enforce the same rule.
 */
export function tally(tx: Pick<TxRecord, 'services' | 'votes' | 'ok' | 'req'>): Decision | undefined {
  const no = tx.services.find((s) => tx.votes[s]?.vote === 'NO');
  if (no) return { outcome: 'ABORT', reason: noVoteReason(no) };
  const allIn = mutated('commitWithoutEveryYes') ? tx.ok > 0 : tx.ok === tx.req;
  return allIn ? { outcome: 'COMMIT', reason: 'every participant voted YES' } : undefined;
}

/** Members that have not voted yet. */
export function awaitingVote(tx: Pick<TxRecord, 'services' | 'votes'>): string[] {
  return tx.services.filter((s) => tx.votes[s] === undefined);
}

// ---------------------------------------------------------------------------------------------
// Phase two: acknowledgements

/**
 * Participants whose acknowledgement phase two waits for, and so who is (re)sent its message: every
 * member that may hold something for the transaction. On COMMIT those that voted YES (prepared
 * state) or READ_ONLY (read locks, kept until the decision: docs/consistency.md); on ABORT also
 * every member whose vote was never recorded, since it may have prepared all the same (its YES was
 * lost, or came after the deadline): one lost ABORT must not leave its hold in place forever. Only a
 * NO voter is known never to have prepared (it releases its own partial effects), and a member an
 * operator released (`releases`) is no longer waited for.
 */
export function awaitingAck(tx: Pick<TxRecord, 'services' | 'votes' | 'acks' | 'decision' | 'releases'>): string[] {
  const mayHold = (s: string): boolean => {
    const vote = tx.votes[s]?.vote;
    return vote === 'YES' || vote === 'READ_ONLY' || (tx.decision === 'ABORT' && vote === undefined && !mutated('noAbortToSilent'));
  };
  return tx.services.filter((s) => tx.acks[s] === undefined && tx.releases?.[s] === undefined && mayHold(s));
}

export interface PhaseTwoResult {
  from: 'COMMITTING' | 'ABORTING';
  final: 'COMMITTED' | 'ABORTED';
  /** Epoch seconds for the TTL attribute (finish time + retention). */
  expiresAt: number;
}

export function phaseTwoResult(status: 'COMMITTING' | 'ABORTING', nowMs: number, retentionDays: number): PhaseTwoResult {
  const expiresAt = Math.floor(nowMs / 1000) + retentionDays * 86_400;
  return status === 'COMMITTING' ? { from: 'COMMITTING', final: 'COMMITTED', expiresAt } : { from: 'ABORTING', final: 'ABORTED', expiresAt };
}

/** A decided record nobody owes an acknowledgement any more: it may finish. */
export function readyToFinish(tx: Pick<TxRecord, 'status' | 'services' | 'votes' | 'acks' | 'decision' | 'releases'>): boolean {
  return (tx.status === 'COMMITTING' || tx.status === 'ABORTING') && awaitingAck(tx).length === 0;
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
    /** When supervision found this participant in doubt (while it still owes its acknowledgement). */
    inDoubtSince?: string;
    /** An operator's release of this participant from phase two's wait (also listed in `releases`). */
    releasedAt?: string;
    releasedBy?: string;
    releasedReason?: string;
  }[];
  timeouts: { prepareSeconds: number; commitSeconds: number };
  createdAt: string;
  updatedAt: string;
  decidedAt?: string;
  finishedAt?: string;
  /** Participants found in doubt that still have not acknowledged. */
  inDoubt?: string[];
  /** The participant whose outage parked this transaction's phase two. */
  parkedWith?: string;
  /** Participants an operator released from phase two's wait, with who, why and when. */
  releases?: { participant: string; operator: string; reason: string; at: string }[];
}

/**
 * Commit timeouts after the decision with an acknowledgement still missing, after which supervision
 * marks the participants still silent as in doubt (and an operator is told).
 */
export const IN_DOUBT_AFTER_COMMIT_TIMEOUTS = 3;

/** Participants still owing their acknowledgement once the transaction was marked in doubt. */
export function inDoubt(tx: Pick<TxRecord, 'services' | 'votes' | 'acks' | 'decision' | 'inDoubtSince' | 'releases'>): string[] {
  return tx.inDoubtSince === undefined ? [] : awaitingAck(tx);
}

const VOTED_NO = ' voted NO';

/** The decision reason a NO records: the voter only (its own reason is kept once, in its vote). */
export function noVoteReason(participant: string): string {
  return `${participant}${VOTED_NO}`;
}

/** The decision's reason as clients read it: a NO's own reason is kept once, in the vote, and shown here. */
export function decisionReasonOf(tx: Pick<TxRecord, 'decision' | 'decisionReason' | 'votes'>): string | undefined {
  const reason = tx.decisionReason;
  if (tx.decision !== 'ABORT' || reason === undefined || !reason.endsWith(VOTED_NO)) return reason;
  const vote = tx.votes[reason.slice(0, -VOTED_NO.length)];
  return vote?.vote === 'NO' && vote.reason ? `${reason}: ${vote.reason}` : reason;
}

export function toView(tx: TxRecord): TxView {
  const doubtful = inDoubt(tx);
  return {
    txId: tx.txId,
    status: tx.status,
    ...(doubtful.length > 0 ? { inDoubt: doubtful } : {}),
    ...(tx.decision ? { decision: { outcome: tx.decision, reason: decisionReasonOf(tx), at: tx.decidedAt } } : {}),
    participants: tx.services.map((service) => {
      const v = tx.votes[service];
      const a = tx.acks[service];
      const doubtedAt = doubtful.includes(service) ? tx.inDoubtSince : undefined;
      const released = tx.releases?.[service];
      return {
        service,
        ...(v ? { vote: v.vote, votedAt: v.at, ...(v.reason ? { reason: v.reason } : {}) } : {}),
        ...(a ? { ack: a.phase, ackedAt: a.at } : {}),
        ...(doubtedAt ? { inDoubtSince: doubtedAt } : {}),
        ...(released ? { releasedAt: released.at, releasedBy: released.operator, releasedReason: released.reason } : {}),
      };
    }),
    timeouts: tx.timeouts,
    createdAt: tx.createdAt,
    updatedAt: tx.updatedAt,
    ...(tx.decidedAt ? { decidedAt: tx.decidedAt } : {}),
    ...(tx.finishedAt ? { finishedAt: tx.finishedAt } : {}),
    ...(tx.parkedWith ? { parkedWith: tx.parkedWith } : {}),
    ...(tx.releases ? { releases: Object.entries(tx.releases).map(([participant, r]) => ({ participant, ...r })).sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0)) } : {}),
  };
}
