// The transaction log's port implemented once over the table of state changes: which transition
// each operation is, the status it acts from, and the write. An adapter (DynamoDB, in memory) only
// says how a conditional update, a conditional put and consistent reads are done, and serves the
// index queries. Every operation is async, so a refused transition rejects rather than throws.
// This is Powertools' persistence-layer pattern: the rules here, the store below.
import {
  type GroupRecord,
  LOG_TRANSITIONS,
  type PutWrite,
  type TransitionName,
  type UpdateWrite,
  assertTransition,
  claimGroupWrite,
  claimIdempotencyKeyWrite,
  createOpsWrite,
  finishIdempotencyKeyWrite,
  groupPk,
  idempotencyPk,
  type ItemUpdate,
  keepItemWrite,
} from './log-transitions';
import type { GroupsPage, IdempotencyRecord, ListPage, MembersPage, TxLogPort, WriteResult } from './ports';
import { BadCursorError, decodeCursor, encodeCursor } from './cursor';
import { type AckEntry, LIST_SHARDS, type OpsRecord, PHASE_STATUS, decisionReasonOf, type PhaseTwoResult, type ReleaseEntry, type TxRecord, type TxStatus, type VoteEntry, opsPk } from './transaction';

/** A listing index entry: the record's key and its creation time. */
export interface ListKey {
  pk: string;
  createdAt: string;
}

function positionKey(position: string): ListKey | undefined {
  if (position === 'start') return undefined;
  const bar = position.indexOf('|');
  return { createdAt: position.slice(0, bar), pk: position.slice(bar + 1) };
}

/** A cursor this log handed out: every shard named once, each at `start`, `end` or `<createdAt>|<txId>`. */
function decodeListCursor(cursor: string, shards: readonly string[]): Record<string, string> {
  const state = decodeCursor(cursor) as Record<string, string>;
  const keys = Object.keys(state);
  const valid = keys.length === shards.length && shards.every((s) => typeof state[s] === 'string' && /^(start|end|[^|]+\|.+)$/.test(state[s]!));
  if (!valid) throw new BadCursorError('cursor is not one this API returned');
  return state;
}

/** How a conditional put ended: written, or not, with the item that made its condition fail. */
export type PutResult = { written: true } | { written: false; existing: Record<string, unknown> | undefined };

export abstract class TableTxLog implements TxLogPort {
  /** Apply `write` to item `pk` if its condition holds (asserting `name` around it); else answer the item as it is. */
  protected abstract update(pk: string, name: TransitionName, before: TxStatus | undefined, write: UpdateWrite): Promise<WriteResult>;
  /** Put `write.item` if its condition holds; when it does not, the item as it is (absent: undefined). */
  protected abstract put(write: PutWrite): Promise<PutResult>;
  /** A conditional update of an item that is not a record (no state change); false when its condition failed. */
  protected abstract updateItem(u: ItemUpdate): Promise<boolean>;
  /** A strongly consistent read of any item of the table. */
  protected abstract read(pk: string): Promise<Record<string, unknown> | undefined>;
  /** Strongly consistent reads of several items; absent ones are left out. */
  protected abstract readMany(pks: readonly string[]): Promise<Record<string, unknown>[]>;
  abstract openMembers(group: string, limit: number, startKey?: Record<string, unknown>): Promise<MembersPage>;
  abstract openGroups(limit: number, startKey?: Record<string, unknown>, overdueBefore?: number): Promise<GroupsPage>;
  /** One listing shard's index entries, newest first, strictly after `after` (the `byCreated` index). */
  protected abstract listShard(shard: string, limit: number, after?: ListKey): Promise<{ keys: ListKey[]; more: boolean }>;

  /**
   * The operations item first (a retried start finds it there: not an error), then the record. A
   * crash between the two leaves an operations item no record points at; its TTL collects it.
   */
  async create(record: TxRecord, ops: OpsRecord): Promise<boolean> {
    assertTransition('create', null);
    if (ops.pk !== opsPk(record.txId)) throw new Error(`operations item ${ops.pk} does not belong to ${record.txId}`);
    // Side by side, one round trip: nothing reads the operations item to decide anything (it is the
    // request as stored, for people), so a record whose operations write failed is only a record
    // without them. The start then fails like a crash after the record, which supervision covers.
    const [, created] = await Promise.all([this.put(createOpsWrite(ops)), this.put(LOG_TRANSITIONS.create.write(record))]);
    return created.written;
  }

  async get(txId: string): Promise<TxRecord | undefined> {
    return (await this.read(txId)) as TxRecord | undefined;
  }

  async getMany(txIds: readonly string[]): Promise<TxRecord[]> {
    return (await this.readMany(txIds)) as unknown as TxRecord[];
  }

  async getOps(txId: string): Promise<OpsRecord | undefined> {
    return (await this.read(opsPk(txId))) as OpsRecord | undefined;
  }

  async recordYes(txId: string, participant: string, entry: VoteEntry, nowMs: number): Promise<WriteResult> {
    if (entry.vote === 'NO') throw new Error('recordYes takes YES or READ_ONLY');
    return this.update(txId, 'recordYes', 'PREPARING', LOG_TRANSITIONS.recordYes.write(participant, entry, nowMs));
  }

  async recordNo(txId: string, participant: string, entry: VoteEntry, reason: string): Promise<WriteResult> {
    if (entry.vote !== 'NO') throw new Error('recordNo takes NO');
    return this.update(txId, 'recordNo', 'PREPARING', LOG_TRANSITIONS.recordNo.write(participant, entry, reason));
  }

  async decideCommit(txId: string, at: string): Promise<WriteResult> {
    return this.update(txId, 'decideCommit', 'PREPARING', LOG_TRANSITIONS.decideCommit.write(at));
  }

  async decideAbort(txId: string, reason: string, at: string, deadlinePassedAt?: number): Promise<WriteResult> {
    return this.update(txId, 'decideAbort', 'PREPARING', LOG_TRANSITIONS.decideAbort.write(reason, at, deadlinePassedAt));
  }

  async recordAck(txId: string, participant: string, entry: AckEntry): Promise<WriteResult> {
    return this.update(txId, 'recordAck', PHASE_STATUS[entry.phase], LOG_TRANSITIONS.recordAck.write(participant, entry));
  }

  async finalize(txId: string, result: PhaseTwoResult, at: string): Promise<WriteResult> {
    return this.update(txId, 'finalize', result.from, LOG_TRANSITIONS.finalize.write(result, at));
  }

  async markInDoubt(txId: string, phase: 'COMMIT' | 'ABORT', since: string): Promise<WriteResult> {
    return this.update(txId, 'markInDoubt', PHASE_STATUS[phase], LOG_TRANSITIONS.markInDoubt.write(phase, since));
  }

  async park(txId: string, phase: 'COMMIT' | 'ABORT', service: string): Promise<WriteResult> {
    return this.update(txId, 'park', PHASE_STATUS[phase], LOG_TRANSITIONS.park.write(phase, service));
  }

  /**
   * The conditional write as the first release (the map must be absent: the common case), and once
   * more adding to the map when the record a failed write answers has one without this participant
   * (an earlier or concurrent release of another). No read before.
   */
  async release(txId: string, phase: 'COMMIT' | 'ABORT', participant: string, entry: ReleaseEntry): Promise<WriteResult> {
    const first = await this.update(txId, 'release', PHASE_STATUS[phase], LOG_TRANSITIONS.release.write(phase, participant, entry, false));
    const now = first.record;
    if (first.applied || now?.status !== PHASE_STATUS[phase] || now.releases === undefined || now.releases[participant] !== undefined) return first;
    return this.update(txId, 'release', PHASE_STATUS[phase], LOG_TRANSITIONS.release.write(phase, participant, entry, true));
  }

  /**
   * Newest first across the listing shards: each shard's next page is read (in parallel), merged by
   * `createdAt`, and the records of the page read in one batch. The cursor says where each shard is.
   */
  async list(limit: number, cursor?: string): Promise<ListPage> {
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`limit must be a positive integer, got ${limit}`);
    const shards = Array.from({ length: LIST_SHARDS }, (_, i) => `l${i}`);
    const state = cursor === undefined ? Object.fromEntries(shards.map((s) => [s, 'start'])) : decodeListCursor(cursor, shards);
    const pages = await Promise.all(
      shards
        .filter((s) => state[s] !== 'end')
        .map(async (shard) => ({ shard, ...(await this.listShard(shard, limit, positionKey(state[shard]!))) })),
    );
    // A k-way merge that takes each shard's entries in the shard's own order: ties on createdAt come
    // in an order DynamoDB leaves unspecified, and a shard's cursor is the last entry taken from it,
    // so what is taken from a shard must always be a prefix of what it returned.
    const heads = pages.map(() => 0);
    const taken: (ListKey & { shard: string })[] = [];
    while (taken.length < limit) {
      let best = -1;
      for (let i = 0; i < pages.length; i++) {
        const k = pages[i]!.keys[heads[i]!];
        if (!k) continue;
        const b = best < 0 ? undefined : pages[best]!.keys[heads[best]!]!;
        if (!b || k.createdAt > b.createdAt || (k.createdAt === b.createdAt && k.pk > b.pk)) best = i;
      }
      if (best < 0) break;
      taken.push({ ...pages[best]!.keys[heads[best]!]!, shard: pages[best]!.shard });
      heads[best]!++;
    }
    const next = { ...state };
    for (const page of pages) {
      const mine = taken.filter((k) => k.shard === page.shard);
      const last = mine[mine.length - 1];
      if (last) next[page.shard] = `${last.createdAt}|${last.pk}`;
      if (mine.length === page.keys.length && !page.more) next[page.shard] = 'end';
    }
    const records = new Map((await this.readMany(taken.map((k) => k.pk))).map((r) => [r.pk as string, r as unknown as TxRecord]));
    const items = taken.flatMap((k) => {
      const r = records.get(k.pk);
      return r ? [{ txId: r.txId, status: r.status, createdAt: r.createdAt, updatedAt: r.updatedAt, ...(r.decision ? { decision: r.decision, decisionReason: decisionReasonOf(r) } : {}) }] : [];
    });
    const open = Object.values(next).some((v) => v !== 'end');
    return { items, ...(open && taken.length === limit ? { nextCursor: encodeCursor(next) } : {}) };
  }

  /** Claim an idempotency key for a transaction id; answers the existing claim if there is one. */
  async claimIdempotencyKey(key: string, txId: string, requestHash: string, at: string, expiresAt: number): Promise<IdempotencyRecord> {
    const item: IdempotencyRecord = { pk: idempotencyPk(key), txId, requestHash, createdAt: at, expiresAt };
    const claim = await this.put(claimIdempotencyKeyWrite(item));
    if (claim.written) return item;
    if (!claim.existing) throw new Error(`idempotency key ${key} vanished after a failed claim`);
    return claim.existing as unknown as IdempotencyRecord;
  }

  async finishIdempotencyKey(key: string, txId: string, expiresAt: number, at: string): Promise<boolean> {
    return this.updateItem(finishIdempotencyKeyWrite(key, txId, expiresAt, at));
  }

  async keepItems(record: Pick<TxRecord, 'txId' | 'idempotencyKey'>, expiresAt: number): Promise<void> {
    await this.updateItem(keepItemWrite(opsPk(record.txId), expiresAt));
    if (record.idempotencyKey !== undefined) await this.updateItem(keepItemWrite(idempotencyPk(record.idempotencyKey), expiresAt, record.txId));
  }

  async readGroup(group: string): Promise<GroupRecord | undefined> {
    return (await this.read(groupPk(group))) as GroupRecord | undefined;
  }

  async claimGroup(group: string, seenGen: number, at: string): Promise<GroupRecord | undefined> {
    const write = claimGroupWrite(group, seenGen, at);
    return (await this.put(write)).written ? (write.item as unknown as GroupRecord) : undefined;
  }
}
