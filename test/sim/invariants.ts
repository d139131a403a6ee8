// The invariants of DESIGN.md, checked on what the simulated world holds: the log's records (and
// every write made to them, seen as it happened), the participants' journals and data, the replies
// they sent, the reply dead-letter queue and the deadlock records. Each check returns
// human-readable violations; none looks at how the product works inside.
import type { TxRecord } from '../../src/core/transaction';
import type { DeadlockRecord } from '../../src/core/ports';
import { buildWaitForGraph, cyclicComponents } from '../../src/core/deadlock';
import { type LockItem, parseOwnerKey } from '../../src/core/locks';
import type { ModelShop } from './model';

/** Watches every record the log hands back, in order: a decision once made never changes (2). */
export class DecisionWatch {
  private readonly decided = new Map<string, string>();
  readonly violations: string[] = [];

  /** The decision seen for a transaction, if any (the log's, since every record it hands back is seen). */
  of(txId: string): string | undefined {
    return this.decided.get(txId);
  }

  see(record: TxRecord | undefined): void {
    if (!record?.decision) return;
    const first = this.decided.get(record.txId);
    if (first === undefined) this.decided.set(record.txId, record.decision);
    else if (first !== record.decision) this.violations.push(`one decision: ${record.txId} was decided ${first}, later ${record.decision}`);
  }
}

/**
 * Who may write what, checked on each log write that applied, with the record after it. `speaksFor`: the participant whose reply queue the writing process consumes (null: a
 * queue that belongs to no participant; undefined: not a reply process at all). `clockMs`: the
 * writing host's clock at the write.
 */
export interface WriteSeen {
  op: string;
  args: unknown[];
  /** The decision the record had just before the write (vote writes only). */
  decidedBefore: string | undefined;
  after: TxRecord;
  speaksFor: string | null | undefined;
  clockMs: number;
}

const VOTE_AND_ACK = new Set(['recordYes', 'recordNo', 'recordAck']);

export function checkWrite(w: WriteSeen): string[] {
  const out: string[] = [];
  const txId = w.after.txId;
  if (VOTE_AND_ACK.has(w.op)) {
    const participant = w.args[1] as string;
    const what = w.op === 'recordAck' ? 'an acknowledgement' : 'a vote';
    // 8: authenticity. A vote or an acknowledgement counts only from the participant it names, and
    // only the reply function (reading the participant's own queue) records one.
    if (w.speaksFor === undefined) out.push(`authenticity: ${txId} recorded ${what} of ${participant} outside the reply path (${w.op})`);
    else if (w.speaksFor !== participant) {
      out.push(`authenticity: ${txId} recorded ${what} in ${participant}'s name that came on ${w.speaksFor === null ? 'a queue of no participant' : `${w.speaksFor}'s reply queue`}`);
    }
    // 3: a non-member's vote or acknowledgement counts for nothing.
    if (!w.after.services.includes(participant)) out.push(`validity: ${txId} recorded ${what} from ${participant}, which is not a member`);
  }
  if (w.op === 'recordYes' || w.op === 'recordNo') {
    const participant = w.args[1] as string;
    // 9: no vote is recorded after the decision.
    if (w.decidedBefore) out.push(`deadlines: ${txId} recorded ${participant}'s vote after its ${w.decidedBefore} decision`);
  }
  if (w.op === 'recordYes') {
    // 9: the vote write refuses a YES at or past the deadline by the recording function's clock
    // (the clock reading it passes must be a real one: not ahead of its host's clock).
    const participant = w.args[1] as string;
    const nowArg = w.args[3] as number;
    if (nowArg >= w.after.prepareDeadlineAt) out.push(`deadlines: ${txId} recorded ${participant}'s YES at ${nowArg}, at or after its prepare deadline ${w.after.prepareDeadlineAt}`);
    if (nowArg > w.clockMs) out.push(`deadlines: ${txId}'s vote write passed the time ${nowArg}, ahead of its host's clock ${w.clockMs}`);
  }
  if (w.op === 'decideAbort') {
    const reason = w.args[1] as string;
    const passedAt = w.args[3] as number | undefined;
    // 9: no timeout abort before the deadline by the aborter's clock.
    if (passedAt !== undefined || /deadline/i.test(reason)) {
      const by = passedAt ?? w.clockMs;
      if (by < w.after.prepareDeadlineAt) out.push(`deadlines: ${txId} was aborted for its deadline at ${by}, before its deadline ${w.after.prepareDeadlineAt}`);
      if (by > w.clockMs) out.push(`deadlines: ${txId}'s timeout abort passed the time ${by}, ahead of its host's clock ${w.clockMs}`);
    }
  }
  if (w.op === 'decideCommit') {
    // 3: COMMIT only when every member's own YES (or READ_ONLY) is recorded.
    for (const service of w.after.services) {
      const vote = w.after.votes[service]?.vote;
      if (vote !== 'YES' && vote !== 'READ_ONLY') out.push(`validity: ${txId} decided COMMIT without a YES from ${service} (${vote ?? 'no vote'})`);
    }
  }
  return out;
}

/**
 * 6: isolation, on each lock write that applied (`before`: the item it replaced). A lease never frees
 * a lock whose owner may still commit: an owner is taken over (removed by a write that grants the lock
 * to another) only once its transaction is aborted or finished, never while PREPARING or COMMITTING.
 * Fencing tokens only rise, and each new grant's token is above every earlier one.
 */
export function checkLockWrite(before: LockItem | undefined, next: LockItem, statusOf: (txId: string) => string | undefined): string[] {
  const out: string[] = [];
  const prior = before?.owners ?? {};
  const granted = Object.keys(next.owners).filter((key) => !(key in prior));
  if (before && next.token < before.token) out.push(`isolation: ${next.resource}'s fencing token fell from ${before.token} to ${next.token}`);
  for (const key of granted) {
    if (before && next.owners[key]!.token <= before.token) out.push(`isolation: ${next.resource} was granted to ${key} with token ${next.owners[key]!.token}, not above ${before.token}`);
  }
  if (granted.length === 0) return out;
  for (const key of Object.keys(prior)) {
    if (key in next.owners) continue;
    const owner = parseOwnerKey(key);
    if (owner.kind !== 'tx') continue;
    const status = statusOf(owner.id);
    if (status === 'PREPARING' || status === 'COMMITTING') {
      out.push(`isolation: ${next.resource} was taken from ${owner.id} (${status}, it may still commit) and granted to ${granted.join(', ')}`);
    }
  }
  return out;
}

/** The deadlock detector aborts only a transaction that is in a cycle of the wait-for graph it read. */
export function checkDeadlockRecord(record: DeadlockRecord, waitingAtRead: LockItem[], nowMs: number): string[] {
  if (!record.cycle.includes(record.victim)) return [`deadlocks: victim ${record.victim} is not in its cycle ${record.cycle.join(' -> ')}`];
  const graph = buildWaitForGraph(waitingAtRead, nowMs);
  const cyclic = new Set(cyclicComponents(graph.adjacency).flat());
  const victimKey = record.victim.includes('#') ? record.victim : `tx#${record.victim}`;
  if (!cyclic.has(victimKey)) return [`deadlocks: victim ${record.victim} was in no cycle of the wait-for graph the detector read`];
  return [];
}

/** What the participants sent: `${service}|${txId}` of each YES and READ_ONLY vote they put on their reply queue. */
export interface SentVotes {
  yes: Set<string>;
  readOnly: Set<string>;
  /** `${service}|${txId}` -> virtual time of the first YES sent. */
  firstYesAt: Map<string, number>;
}

/**
 * Checks at the end of a run, once faults have healed and the world was given time to settle.
 * `strictDeadline` adds that a prepare never begins after its deadline by its participant's clock.
 * Invariant 10 holds always: no prepare effect lands after the participant's abort effect (an effect
 * lands only with its barrier state, so a prepare paused past the ABORT changes nothing).
 * `strictBarrier` adds that user prepare is not even called after the abort landed, which is not
 * promised: a run paused after its claim may still call it, and its writes are then discarded.
 */
export function checkFinal(
  records: Map<string, TxRecord>,
  shop: ModelShop,
  started: Set<string>,
  sent: SentVotes,
  { strictBarrier = false, strictDeadline = false }: { strictBarrier?: boolean | undefined; strictDeadline?: boolean | undefined } = {},
): string[] {
  const out: string[] = [];
  const byTx = new Map<string, { commits: Set<string>; aborts: Set<string>; prepared: Map<string, string>; preparedAfterAbort: string[]; startedAfterAbort: string[] }>();
  const entry = (txId: string) => {
    let e = byTx.get(txId);
    if (!e) byTx.set(txId, (e = { commits: new Set(), aborts: new Set(), prepared: new Map(), preparedAfterAbort: [], startedAfterAbort: [] }));
    return e;
  };
  for (const j of shop.journal) {
    const e = entry(j.txId);
    if (j.kind === 'commit') e.commits.add(j.service);
    if (j.kind === 'abort') {
      e.aborts.add(j.service);
      // 9: a participant that voted YES never aborts on its own: once its YES is out, its abort runs
      // only for a decided ABORT (a compensation after COMMIT releases a stray hold, not the transaction).
      const key = `${j.service}|${j.txId}`;
      if (j.decision === undefined && (sent.firstYesAt.get(key) ?? Number.POSITIVE_INFINITY) <= j.at) {
        out.push(`deadlines: ${j.service} voted YES on ${j.txId} and ran its abort at ${j.at} with nothing decided`);
      }
    }
    if (j.kind === 'prepared') e.prepared.set(j.service, j.vote);
    // 10: no effect outside its barrier state. After a participant ran its abort, its prepare never runs
    // again for that transaction ("no hanging"); commit runs only after a YES of its own.
    if (j.kind === 'prepared' && e.aborts.has(j.service)) e.preparedAfterAbort.push(j.service);
    if (j.kind === 'prepare-start' && e.aborts.has(j.service)) e.startedAfterAbort.push(j.service);
    // 9, strict (issue 10, item 3): a PREPARE received after its deadline is answered NO without user code.
    if (strictDeadline && j.kind === 'prepare-start' && j.late) out.push(`deadlines: ${j.service} ran prepare for ${j.txId} after its deadline by its own clock`);
    if (j.kind === 'commit' && e.prepared.get(j.service) !== 'YES') out.push(`barrier: ${j.service} ran commit for ${j.txId} without having voted YES`);
  }

  for (const txId of started) {
    const record = records.get(txId);
    // 4: termination.
    if (!record) {
      out.push(`termination: ${txId} was started and has no record`);
      continue;
    }
    if (record.status !== 'COMMITTED' && record.status !== 'ABORTED') out.push(`termination: ${txId} is still ${record.status}`);
    // 3: validity. COMMIT only if every member voted YES or READ_ONLY, and each recorded vote is one
    // its participant really sent.
    for (const service of record.services) {
      const vote = record.votes[service]?.vote;
      if (record.decision === 'COMMIT' && vote !== 'YES' && vote !== 'READ_ONLY') out.push(`validity: ${txId} committed without a YES from ${service} (${vote ?? 'no vote'})`);
      const key = `${service}|${txId}`;
      if (vote === 'YES' && !sent.yes.has(key)) out.push(`validity: ${txId} recorded a YES from ${service}, which never sent one`);
      if (vote === 'READ_ONLY' && !sent.readOnly.has(key)) out.push(`validity: ${txId} recorded a READ_ONLY from ${service}, which never sent one`);
    }
    for (const voter of Object.keys(record.votes)) if (!record.services.includes(voter)) out.push(`validity: ${txId} holds a vote from ${voter}, not a member`);
    const e = byTx.get(txId);
    if (!e) continue;
    // 1: atomicity.
    if (e.commits.size > 0 && record.decision !== 'COMMIT') out.push(`atomicity: ${[...e.commits].join(', ')} committed ${txId}, decided ${record.decision ?? 'nothing'}`);
    if (record.decision === 'COMMIT') {
      for (const [service, vote] of e.prepared) if (vote === 'YES' && !e.commits.has(service)) out.push(`atomicity: ${service} voted YES on committed ${txId} and never committed`);
    }
    for (const service of e.preparedAfterAbort) out.push(`barrier: ${service}'s prepare effect landed for ${txId} after its abort effect`);
    if (strictBarrier) for (const service of e.startedAfterAbort) out.push(`barrier: ${service} ran prepare for ${txId} after running its abort`);
  }

  // 5 and 7: business totals are conserved, nothing is negative, every hold was settled, and each
  // transaction bought at most its amount once.
  for (const [key, stock] of shop.stock) {
    const initial = shop.initial.get(key)!;
    const held = [...stock.holds.values()].reduce((a, b) => a + b, 0);
    if (stock.available < 0) out.push(`totals: ${key} available went negative (${stock.available})`);
    if (stock.available + held + stock.sold !== initial) out.push(`totals: ${key} available ${stock.available} + held ${held} + sold ${stock.sold} != ${initial}`);
    for (const [txId, amount] of stock.holds) out.push(`termination: ${key} still holds ${amount} for ${txId} (${records.get(txId)?.status ?? 'no record'})`);
    for (const [txId] of stock.sales) {
      if (records.get(txId)?.decision !== 'COMMIT') out.push(`atomicity: ${key} sold to ${txId}, which did not commit`);
    }
  }
  return out;
}

/**
 * 6: isolation. Two transactions that both committed never held the same resource at once: each
 * holds it from its prepare's YES until its commit ran there.
 */
export function checkIsolation(shop: ModelShop, records: Map<string, TxRecord>, resourcesOf: (txId: string, service: string) => string[]): string[] {
  const out: string[] = [];
  const spans = new Map<string, { txId: string; from: number; to: number }[]>();
  const preparedAt = new Map<string, number>();
  for (const j of shop.journal) {
    const key = `${j.service}|${j.txId}`;
    if (j.kind === 'prepared' && j.vote === 'YES') preparedAt.set(key, preparedAt.get(key) ?? j.at);
    if (j.kind === 'commit' && records.get(j.txId)?.decision === 'COMMIT' && preparedAt.has(key)) {
      for (const resource of resourcesOf(j.txId, j.service)) {
        const list = spans.get(`${j.service}/${resource}`) ?? [];
        list.push({ txId: j.txId, from: preparedAt.get(key)!, to: j.at });
        spans.set(`${j.service}/${resource}`, list);
      }
      preparedAt.delete(key);
    }
  }
  for (const [resource, list] of spans) {
    list.sort((a, b) => a.from - b.from);
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1]!;
      const b = list[i]!;
      if (b.from < a.to) out.push(`isolation: ${a.txId} and ${b.txId} both held ${resource} (${a.from}-${a.to} and ${b.from}-${b.to}) and both committed`);
    }
  }
  return out;
}
