// What the console shows and does, for the embedded stack and for a deployed one alike: it reads the
// transaction log and the lock table through the product's own modules (TxLog, LockStore, the
// wait-for graph of src/core/deadlock.ts), the queues' attributes with the SQS client, and acts
// through the public API (abort, release) or on the dead-letter queues (redrive). Nothing runs in
// the background: each read is made when the page asks, and shared by the asks that overlap.
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DeployedOutputs } from '../../localstack/outputs';
import { LockStore } from '../aws/lock-store';
import { readRedrivePolicy } from '../aws/queues';
import { TxLog, documentClient } from '../aws/log-store';
import { COORDINATOR_LOCK_SCOPE } from '../coordinator';
import { type WaitEdge, buildWaitForGraph, waitEdges } from '../core/deadlock';
import { ownerKey, parseOwnerKey } from '../core/locks';
import { serviceName, txId as txIdSchema } from '../core/messages';
import { isFinal } from '../core/recovery';
import type { DeadlockRecord } from '../core/ports';
import { type TxRecord, type TxStatus, type TxView, TX_STATUSES, awaitingAck, groupInfo, inDoubt, toView } from '../core/transaction';
import { type LockView, view as lockView } from '../locks/service';
import { systemClock } from '../aws/system';
import type { RequestToSign } from '../local/sigv4';
import { countByStatus, type Series, seriesOf } from './series';

/**
 * Where the console finds the stack: what `cdk deploy --outputs-file` says (readDeployedOutputs), or
 * the embedded stack's outputs. An empty lockTable is none.
 */
export type ConsoleTargets = Pick<DeployedOutputs, 'apiUrl' | 'txTable' | 'lockTable' | 'participantQueues' | 'replyQueueUrls'>;

export interface ConsoleSourceOptions {
  targets: ConsoleTargets;
  dynamodb: DynamoDBClient;
  sqs: SQSClient;
  /** The headers to send an API request with (SigV4 with the operator's credentials); absent: as they are. */
  sign?: (request: RequestToSign) => Promise<Record<string, string>>;
  now?: () => number;
}

/** How far back the charts and counts look, and their resolution. */
export const WINDOW_MS = 10 * 60_000;
export const BUCKET_MS = 5_000;
/** One read of the recent transactions takes at most this many list pages of PAGE_SIZE. */
const MAX_PAGES = 10;
const PAGE_SIZE = 100;
/** Transactions kept for the charts; past it the oldest go (the charts then show a sample). */
const MAX_KEPT = 5_000;
/** Open transactions older than the window read per overview (supervision groups' members). */
const MAX_OLD_OPEN = 500;
/** Open transactions whose held locks are looked up per overview. */
const MAX_LOCK_OWNERS = 20;
/** Reads within this long of the last one are answered from it. */
const FRESH_MS = 1_000;
/** A redrive moves at most this many messages per request. */
export const MAX_REDRIVE = 1_000;
/** The attributes a dead letter carries about its dead-lettering (src/aws/queues.ts): dropped on redrive. */
const DEAD_LETTER_ATTRIBUTES = new Set(['dtc-reason', 'dtc-participant', 'dtc-source']);

export interface QueueInfo {
  name: string;
  url: string;
  kind: 'requests' | 'replies' | 'dead-letter';
  /** The participant the queue belongs to (absent for the shared reply dead-letter queue). */
  service?: string;
  visible: number;
  inFlight: number;
  delayed: number;
  /** For a dead-letter queue: the queues whose messages it receives. */
  sources?: string[];
}

export interface InDoubtEntry {
  txId: string;
  status: TxStatus;
  decision?: string;
  participant: string;
  since?: string;
  parkedWith?: string;
}

export interface Overview {
  now: string;
  windowMs: number;
  bucketMs: number;
  series: Series;
  /** Of the transactions created in the window. */
  counts: Record<TxStatus, number>;
  /** True when the window held more than one read could page through: the charts show a sample. */
  sampled: boolean;
  /** Open transactions now (the supervision index), by group kind. */
  open: { total: number; parked: Record<string, number> };
  inDoubt: InDoubtEntry[];
  locks: LockView[];
  waitFor: { nodes: { id: string; kind: string; label: string }[]; edges: WaitEdge[] };
  deadlocks: DeadlockRecord[];
  queues: QueueInfo[];
}

export interface Filter {
  status?: string;
  participant?: string;
  id?: string;
  limit?: number;
}

export class ConsoleSource {
  private readonly log: TxLog;
  private readonly locks: LockStore | undefined;
  private readonly now: () => number;
  private readonly known = new Map<string, TxRecord>();
  private newestCreated = '';
  private sampled = false;
  private refreshing: Promise<void> | undefined;
  private refreshedAt = -Infinity;
  private queueList: Promise<QueueInfo[]> | undefined;

  constructor(private readonly options: ConsoleSourceOptions) {
    const doc = documentClient(options.dynamodb);
    this.log = new TxLog(doc, options.targets.txTable);
    this.locks = options.targets.lockTable ? new LockStore(doc, options.targets.lockTable) : undefined;
    this.now = options.now ?? systemClock;
  }

  get services(): string[] {
    return Object.keys(this.options.targets.participantQueues);
  }

  async overview(): Promise<Overview> {
    await this.refresh();
    const nowMs = this.now();
    const records = [...this.known.values()];
    const { groups, ...open } = await this.openGroups();
    const [oldOpen, queues, deadlocks] = await Promise.all([this.oldOpen(groups, nowMs), this.queues(), this.deadlocks()]);
    const openRecords = [...records.filter((r) => !isFinal(r.status)), ...oldOpen.filter((r) => !this.known.has(r.txId))];
    const { locks, waitFor } = await this.lockPicture(openRecords, nowMs);
    return {
      now: new Date(nowMs).toISOString(),
      windowMs: WINDOW_MS,
      bucketMs: BUCKET_MS,
      series: seriesOf(records, nowMs, WINDOW_MS, BUCKET_MS),
      counts: countByStatus(records.filter((r) => Date.parse(r.createdAt) >= nowMs - WINDOW_MS)),
      sampled: this.sampled,
      open,
      inDoubt: inDoubtOf(openRecords),
      locks,
      waitFor,
      deadlocks,
      queues,
    };
  }

  /** The most recent transactions (of the window, newest first) that pass the filter; `id` looks one up whatever its age. */
  async transactions(filter: Filter): Promise<TxView[]> {
    if (filter.status !== undefined && !(TX_STATUSES as readonly string[]).includes(filter.status)) throw new BadRequest(`status must be one of ${TX_STATUSES.join(', ')}`);
    if (filter.participant !== undefined && !serviceName.safeParse(filter.participant).success) throw new BadRequest('participant must be a service name');
    const limit = filter.limit ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw new BadRequest('limit must be a whole number from 1 to 500');
    if (filter.id !== undefined && filter.id !== '') {
      const one = await this.transaction(filter.id);
      return one && passes(one, filter) ? [one] : [];
    }
    await this.refresh();
    return [...this.known.values()]
      .sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.txId < b.txId ? 1 : -1))
      .map(toView)
      .filter((v) => passes(v, filter))
      .slice(0, limit);
  }

  /** The transaction's view, with the participants phase two still waits for once decided (the page offers to release them). */
  async transaction(txId: string): Promise<(TxView & { awaitingAck: string[] }) | undefined> {
    if (!txIdSchema.safeParse(txId).success) throw new BadRequest('a transaction id is 8-64 letters, digits or dashes');
    const record = await this.log.get(txId);
    if (!record) return undefined;
    if (this.known.has(txId)) this.known.set(txId, record);
    return { ...toView(record), awaitingAck: record.decision && !record.finishedAt ? awaitingAck(record) : [] };
  }

  /** POST /transactions/{id}/abort on the API: its status and body as they are. */
  abort(txId: string, reason: string): Promise<{ status: number; body: unknown }> {
    return this.callApi('POST', `/transactions/${encodeURIComponent(txId)}/abort`, { reason });
  }

  /** POST /transactions/{id}/release on the API: a retired participant let go of an in-doubt wait. */
  release(txId: string, body: { participant: string; operator: string; reason: string }): Promise<{ status: number; body: unknown }> {
    return this.callApi('POST', `/transactions/${encodeURIComponent(txId)}/release`, body);
  }

  /**
   * Up to `max` messages of a dead-letter queue, left where they are: received with no visibility
   * timeout, so they are visible again at once (their receive count rises; a DLQ has no redrive).
   */
  async peek(queueUrl: string, max = 10): Promise<{ messageId: string; body: string; reason?: string; participant?: string; receives: number; sentAt?: string }[]> {
    await this.deadLetterQueue(queueUrl);
    const out = await this.options.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: Math.min(10, max), VisibilityTimeout: 0, WaitTimeSeconds: 0, MessageAttributeNames: ['All'], MessageSystemAttributeNames: ['All'] }),
    );
    return (out.Messages ?? []).map((m) => ({
      messageId: m.MessageId ?? '',
      body: m.Body ?? '',
      ...(m.MessageAttributes?.['dtc-reason']?.StringValue ? { reason: m.MessageAttributes['dtc-reason'].StringValue } : {}),
      ...(m.MessageAttributes?.['dtc-participant']?.StringValue ? { participant: m.MessageAttributes['dtc-participant'].StringValue } : {}),
      receives: Number(m.Attributes?.ApproximateReceiveCount ?? 0),
      ...(m.Attributes?.SentTimestamp ? { sentAt: new Date(Number(m.Attributes.SentTimestamp)).toISOString() } : {}),
    }));
  }

  /**
   * Move a dead-letter queue's messages back to the queue each came from: receive, send to the
   * source, delete (a crash in between leaves a copy in both: the protocol takes duplicates). The
   * source is the one SQS names (DeadLetterQueueSourceArn), else the DLQ's only source queue, else
   * (the shared reply DLQ) the reply queue of the participant the message names. A message with no
   * source found is left in the DLQ, visible again.
   */
  async redrive(queueUrl: string): Promise<{ moved: number; left: number }> {
    const dlq = await this.deadLetterQueue(queueUrl);
    const all = await this.queues();
    const byArn = new Map<string, string>();
    await Promise.all(
      all
        .filter((q) => q.kind !== 'dead-letter')
        .map(async (q) => byArn.set(await this.queueArn(q.url), q.url)),
    );
    const sources = dlq.sources ?? [];
    let moved = 0;
    let left = 0;
    const seenLeft = new Set<string>();
    while (moved + left < MAX_REDRIVE) {
      const out = await this.options.sqs.send(
        new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 30, WaitTimeSeconds: 0, MessageAttributeNames: ['All'], MessageSystemAttributeNames: ['All'] }),
      );
      const messages = out.Messages ?? [];
      if (messages.length === 0) break;
      let progressed = false;
      for (const m of messages) {
        const target = sourceOf(m, byArn, sources, this.options.targets.replyQueueUrls);
        if (!target) {
          left += seenLeft.has(m.MessageId ?? '') ? 0 : 1;
          seenLeft.add(m.MessageId ?? '');
          await this.options.sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle!, VisibilityTimeout: 0 }));
          continue;
        }
        const attributes = Object.fromEntries(Object.entries(m.MessageAttributes ?? {}).filter(([name]) => !DEAD_LETTER_ATTRIBUTES.has(name)));
        await this.options.sqs.send(new SendMessageCommand({ QueueUrl: target, MessageBody: m.Body ?? '', ...(Object.keys(attributes).length > 0 ? { MessageAttributes: attributes } : {}) }));
        await this.options.sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle! }));
        moved++;
        progressed = true;
      }
      // Only messages without a source came back: stop rather than receive them again and again.
      if (!progressed) break;
    }
    return { moved, left };
  }

  /** Each queue of the app with its depth; the dead-letter queues are found from the sources' redrive policies. */
  async queues(): Promise<QueueInfo[]> {
    this.queueList ??= this.discoverQueues().catch((err: unknown) => {
      this.queueList = undefined;
      throw err;
    });
    const list = await this.queueList;
    return Promise.all(
      list.map(async (q) => {
        const out = await this.options.sqs.send(
          new GetQueueAttributesCommand({ QueueUrl: q.url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'] }),
        );
        const a = out.Attributes ?? {};
        return { ...q, visible: Number(a.ApproximateNumberOfMessages ?? 0), inFlight: Number(a.ApproximateNumberOfMessagesNotVisible ?? 0), delayed: Number(a.ApproximateNumberOfMessagesDelayed ?? 0) };
      }),
    );
  }

  private async deadLetterQueue(queueUrl: string): Promise<QueueInfo> {
    const dlq = (await this.queues()).find((q) => q.url === queueUrl && q.kind === 'dead-letter');
    if (!dlq) throw new BadRequest(`${queueUrl} is not one of this stack's dead-letter queues`);
    return dlq;
  }

  private readonly arns = new Map<string, Promise<string>>();
  private queueArn(url: string): Promise<string> {
    let arn = this.arns.get(url);
    if (!arn) {
      arn = this.options.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] })).then((out) => {
        const value = out.Attributes?.QueueArn;
        if (!value) throw new Error(`queue ${url} has no ARN`);
        return value;
      });
      this.arns.set(url, arn);
    }
    return arn;
  }

  private async discoverQueues(): Promise<QueueInfo[]> {
    const { participantQueues, replyQueueUrls } = this.options.targets;
    const sources: QueueInfo[] = [
      ...Object.entries(participantQueues).map(([service, url]) => queue(url, 'requests', service)),
      ...Object.entries(replyQueueUrls).map(([service, url]) => queue(url, 'replies', service)),
    ];
    const targets = await Promise.all(sources.map((source) => readRedrivePolicy(this.options.sqs, source.url)));
    const dlqs = new Map<string, QueueInfo>();
    sources.forEach((source, i) => {
      const url = targets[i]?.url;
      if (!url) return;
      let dlq = dlqs.get(url);
      if (!dlq) {
        dlq = { ...queue(url, 'dead-letter', source.kind === 'requests' ? source.service : undefined), sources: [] };
        dlqs.set(url, dlq);
      }
      dlq.sources!.push(source.url);
    });
    return [...sources, ...dlqs.values()];
  }

  /** Read what is new in the log since the last read, and again whatever was still open. */
  private refresh(): Promise<void> {
    if (this.now() - this.refreshedAt < FRESH_MS) return Promise.resolve();
    this.refreshing ??= this.readRecent().finally(() => {
      this.refreshing = undefined;
      this.refreshedAt = this.now();
    });
    return this.refreshing;
  }

  private async readRecent(): Promise<void> {
    const nowMs = this.now();
    const since = new Date(nowMs - WINDOW_MS).toISOString();
    // Back to a little before the newest seen last time: a record written late (a slow start) still shows.
    const watermark = this.newestCreated ? new Date(Math.max(Date.parse(this.newestCreated) - 5_000, nowMs - WINDOW_MS)).toISOString() : since;
    const ids: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    let more = false;
    for (; pages < MAX_PAGES; pages++) {
      const page = await this.log.list(PAGE_SIZE, cursor);
      const fresh = page.items.filter((i) => i.createdAt >= since);
      ids.push(...fresh.map((i) => i.txId));
      cursor = page.nextCursor;
      const oldest = page.items[page.items.length - 1]?.createdAt;
      if (!cursor || oldest === undefined || oldest < watermark) break;
      more = pages === MAX_PAGES - 1;
    }
    this.sampled = more;
    const open = [...this.known.values()].filter((r) => !isFinal(r.status)).map((r) => r.txId);
    const wanted = [...new Set([...ids.filter((id) => !this.known.has(id) || !isFinal(this.known.get(id)!.status)), ...open])];
    for (const record of await this.log.getMany(wanted)) this.known.set(record.txId, record);
    for (const record of this.known.values()) if (record.createdAt < since) this.known.delete(record.txId);
    if (this.known.size > MAX_KEPT) {
      const oldest = [...this.known.values()].sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1)).slice(0, this.known.size - MAX_KEPT);
      for (const r of oldest) this.known.delete(r.txId);
      this.sampled = true;
    }
    for (const record of this.known.values()) if (record.createdAt > this.newestCreated) this.newestCreated = record.createdAt;
  }

  /** How many transactions are open now, and how many are parked with each participant's supervisor. */
  private async openGroups(): Promise<{ total: number; parked: Record<string, number>; groups: Record<string, number> }> {
    const groups: Record<string, number> = {};
    let startKey: Record<string, unknown> | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const out = await this.log.openGroups(1_000, startKey);
      for (const [g, n] of Object.entries(out.groups)) groups[g] = (groups[g] ?? 0) + n;
      startKey = out.nextKey;
      if (!startKey) break;
    }
    const parked: Record<string, number> = {};
    let total = 0;
    for (const [g, n] of Object.entries(groups)) {
      total += n;
      const info = groupInfo(g);
      if (info.kind === 'park') parked[info.service] = (parked[info.service] ?? 0) + n;
    }
    return { total, parked, groups };
  }

  /** Open transactions the window does not cover: parked ones, and those of groups closed before it. */
  private async oldOpen(groups: Record<string, number>, nowMs: number): Promise<TxRecord[]> {
    const old = Object.keys(groups).filter((g) => {
      const info = groupInfo(g);
      return info.kind === 'park' || info.closesAt < nowMs - WINDOW_MS;
    });
    const ids: string[] = [];
    for (const g of old) {
      if (ids.length >= MAX_OLD_OPEN) break;
      const page = await this.log.openMembers(g, MAX_OLD_OPEN - ids.length);
      ids.push(...page.items.map((i) => i.txId));
    }
    return this.log.getMany(ids);
  }

  private async deadlocks(): Promise<DeadlockRecord[]> {
    return this.locks ? (await this.locks.listDeadlocks(20)).items : [];
  }

  /** Locks that someone waits for (with the wait-for graph), and locks the open transactions hold. */
  private async lockPicture(open: TxRecord[], nowMs: number): Promise<{ locks: LockView[]; waitFor: Overview['waitFor'] }> {
    const store = this.locks;
    if (!store) return { locks: [], waitFor: { nodes: [], edges: [] } };
    const waiting = await store.waiting();
    const items = new Map(waiting.map((i) => [i.resource, i]));
    const owners = open.slice(0, MAX_LOCK_OWNERS);
    const held = await Promise.all(
      owners.flatMap((r) => [...r.services, COORDINATOR_LOCK_SCOPE].map((scope) => store.held(ownerKey({ kind: 'tx', id: r.txId }), scope))),
    );
    const more = [...new Set(held.flat())].filter((resource) => !items.has(resource));
    for (const item of await Promise.all(more.map((resource) => store.get(resource)))) if (item.version > 0) items.set(item.resource, item);
    const locks = [...items.values()].filter((i) => Object.keys(i.owners).length > 0 || Object.keys(i.waiters).length > 0).map(lockView);
    const graph = buildWaitForGraph(waiting, nowMs);
    const nodes = [...graph.adjacency.keys()].map((key) => {
      const ref = parseOwnerKey(key);
      return { id: key, kind: ref.kind, label: ref.kind === 'tx' ? ref.id.slice(0, 8) : ref.id };
    });
    return { locks: locks.sort((a, b) => a.resource.localeCompare(b.resource)), waitFor: { nodes, edges: waitEdges(graph) } };
  }

  private async callApi(method: string, path: string, body: unknown): Promise<{ status: number; body: unknown }> {
    const url = new URL(`${this.options.targets.apiUrl.replace(/\/+$/, '')}${path}`);
    const payload = JSON.stringify(body);
    const plain = { 'content-type': 'application/json' };
    const headers = this.options.sign ? await this.options.sign({ method, url, headers: plain, body: payload }) : plain;
    const res = await fetch(url, { method, headers, body: payload });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Not JSON (a gateway's own error page): passed on as text.
    }
    return { status: res.status, body: parsed };
  }
}

/** A request the console refuses (400), with the reason. */
export class BadRequest extends Error {
  override name = 'BadRequest';
}

function queue(url: string, kind: QueueInfo['kind'], service?: string): QueueInfo {
  return { name: url.split('/').pop() ?? url, url, kind, ...(service ? { service } : {}), visible: 0, inFlight: 0, delayed: 0 };
}

function passes(v: TxView, filter: Filter): boolean {
  if (filter.status !== undefined && v.status !== filter.status) return false;
  if (filter.participant !== undefined && !v.participants.some((p) => p.service === filter.participant)) return false;
  return true;
}

/** Each participant found in doubt, and each transaction parked with a participant's supervisor. */
export function inDoubtOf(records: readonly TxRecord[]): InDoubtEntry[] {
  const entries: InDoubtEntry[] = [];
  for (const r of records) {
    const doubtful = inDoubt(r);
    const base = { txId: r.txId, status: r.status, ...(r.decision ? { decision: r.decision } : {}), ...(r.parkedWith ? { parkedWith: r.parkedWith } : {}) };
    for (const service of doubtful) entries.push({ ...base, participant: service, since: r.inDoubtSince! });
    if (r.parkedWith && !doubtful.includes(r.parkedWith)) entries.push({ ...base, participant: r.parkedWith });
  }
  return entries.sort((a, b) => (a.since ?? '').localeCompare(b.since ?? '') || a.txId.localeCompare(b.txId));
}

/** Where a dead letter goes back to (see ConsoleSource.redrive); undefined when nothing says. */
export function sourceOf(m: Message, byArn: ReadonlyMap<string, string>, sources: readonly string[], replyQueues: Readonly<Record<string, string>>): string | undefined {
  const named = m.Attributes?.DeadLetterQueueSourceArn;
  if (named && byArn.has(named)) return byArn.get(named);
  if (sources.length === 1) return sources[0];
  const owner = m.MessageAttributes?.['dtc-participant']?.StringValue ?? participantInBody(m.Body);
  const url = owner === undefined ? undefined : replyQueues[owner];
  return url !== undefined && sources.includes(url) ? url : undefined;
}

function participantInBody(body: string | undefined): string | undefined {
  try {
    const parsed = JSON.parse(body ?? '') as { participant?: unknown };
    return typeof parsed.participant === 'string' ? parsed.participant : undefined;
  } catch {
    return undefined;
  }
}
