// Supervision over the memory adapters on virtual time: the real supervisor state machine
// (MemoryStepFunctions running the synthesized definition, its Supervise task running superviseRun)
// over MemoryTxLog and memory queues, and ensureSupervisor over a small state machine of its own.
// The deadline abort comes at, not before, the deadline; a transaction with every YES recorded and no
// decision commits; phase two is re-sent to the unacknowledged on its schedule; a group ends only when
// empty and closed; parking; continuing as a new generation; retried starts change no decision.
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { executionArn } from '../../src/aws/workflow';
import { PARK_AFTER_MS } from '../../src/core/recovery';
import { groupInfo, type TxRecord } from '../../src/core/transaction';
import { workflowDefinition } from '../../src/memory/definition';
import { MemoryTxLog } from '../../src/memory/log';
import { MemoryParticipantQueues } from '../../src/memory/sqs';
import { MemoryStepFunctions } from '../../src/memory/stepfunctions';
import { VirtualTimers } from '../../src/memory/timers';
import { GROUP_GRACE_MS, RUNS_PER_EXECUTION, ensureSupervisor, superviseRun } from '../../src/supervisor';
import { SERVICES, T0, iso, memoryStack, type MemoryStack } from './memory-stack';

const [INVENTORY, PAYMENT, SHIPPING, ORDER] = SERVICES as [string, string, string, string];

beforeAll(() => {
  // Synthesized once per process; done here so no single test pays for it.
  workflowDefinition();
}, 120_000);

/** When a transaction's bucket group stops taking members and its supervisor may end. */
const groupEndsAt = (r: TxRecord): number => {
  const info = groupInfo(r.og!);
  if (info.kind !== 'bucket') throw new Error('not a bucket group');
  return info.closesAt + GROUP_GRACE_MS;
};

/** Start a transaction whose every vote is YES, decided COMMIT now; answers its id with the queues emptied. */
async function committed(s: MemoryStack, members: readonly string[], commitSeconds = 2): Promise<string> {
  const txId = await s.start(s.body(members, { prepareSeconds: 10, commitSeconds }));
  for (const p of members) await s.vote(txId, p, 'YES');
  expect(s.record(txId).status).toBe('COMMITTING');
  for (const p of s.services) s.take(p);
  return txId;
}

describe('a group\'s supervisor', () => {
  it('aborts an undecided transaction at its deadline, not before, and sends ABORT to everyone who may have prepared', async () => {
    const s = memoryStack();
    const txId = await s.start(s.body(SERVICES, { prepareSeconds: 5, commitSeconds: 30 }));
    const r = s.record(txId);
    expect(s.supervisor(r.og!)).toBe('RUNNING');
    for (const p of SERVICES) s.take(p);
    await s.timers.advanceTo(T0 + 1_000);
    await s.vote(txId, INVENTORY, 'YES');
    await s.timers.advanceTo(T0 + 4_999);
    expect(s.record(txId).status).toBe('PREPARING');
    // Its supervisor was started to look first at the deadline, when something can first be due: no run before.
    expect(s.runs).toHaveLength(0);
    await s.timers.advanceTo(T0 + 5_000);
    expect(s.record(txId)).toMatchObject({ status: 'ABORTING', decision: 'ABORT', decisionReason: 'prepare deadline passed', decidedAt: iso(T0 + 5_000) });
    expect(s.runs.at(-1)).toMatchObject({ lastRunAt: T0 + 5_000, report: { aborted: 1 } });
    for (const p of SERVICES) expect(s.take(p).map((m) => [m.type, m.sentAtMs])).toEqual([['ABORT', T0 + 5_000]]);
  });

  it('does not abort before the deadline by its own clock, whatever it is asked', async () => {
    const s = memoryStack({ supervise: false });
    const txId = await s.start(s.body([INVENTORY], { prepareSeconds: 5, commitSeconds: 30 }));
    const group = s.record(txId).og!;
    await s.timers.advanceTo(T0 + 4_999);
    const early = await superviseRun(s.coordinator, s.supervisorDeps, { group, gen: 0, runs: 0 });
    // It looks again at the deadline (here a second later: a supervisor sleeps at least a second).
    expect(early).toMatchObject({ done: false, wakeAt: iso(T0 + 5_999), report: { members: 1, aborted: 0 } });
    expect(s.record(txId).status).toBe('PREPARING');
    await s.timers.advanceTo(T0 + 5_000);
    expect(await superviseRun(s.coordinator, s.supervisorDeps, { group, gen: 0, runs: 1, lastRunAt: T0 + 4_999 })).toMatchObject({ report: { aborted: 1 } });
    expect(s.record(txId).status).toBe('ABORTING');
  });

  it('commits a transaction whose every YES is recorded but undecided (its decider crashed), and sends COMMIT', async () => {
    const s = memoryStack();
    const txId = await s.start(s.body([INVENTORY, PAYMENT]));
    for (const p of SERVICES) s.take(p);
    for (const p of [INVENTORY, PAYMENT]) await s.log.recordYes(txId, p, { vote: 'YES', at: iso(T0) }, T0);
    // The supervisor's first look: the prepare deadline (10 s), here also the bucket's close.
    await s.timers.advanceTo(T0 + 10_000);
    expect(s.record(txId)).toMatchObject({ status: 'COMMITTING', decision: 'COMMIT', decidedAt: iso(T0 + 10_000) });
    expect(s.runs[0]).toMatchObject({ report: { committed: 1 } });
    expect(s.take(INVENTORY).map((m) => m.type)).toEqual(['COMMIT']);
    expect(s.take(PAYMENT).map((m) => m.type)).toEqual(['COMMIT']);
  });

  it('re-sends phase two only to the unacknowledged, at decided + c, 3c, 7c ..., marks them in doubt after 3 commit timeouts, then finishes', async () => {
    const s = memoryStack();
    const txId = await committed(s, SERVICES, 2);
    for (const p of [INVENTORY, SHIPPING, ORDER]) await s.ack(txId, p, 'COMMIT');
    await s.timers.advanceTo(T0 + 35_000);
    const resent = s.take(PAYMENT);
    expect(resent.map((m) => [m.type, m.sentAtMs - T0, m.attempt])).toEqual([
      ['COMMIT', 2_000, 2],
      ['COMMIT', 6_000, 3],
      ['COMMIT', 14_000, 4],
      ['COMMIT', 30_000, 5],
    ]);
    for (const p of [INVENTORY, SHIPPING, ORDER]) expect(s.take(p)).toEqual([]);
    // In doubt at decided + 3c: marked once, and a copy for operators in payment's DLQ.
    expect(s.record(txId).inDoubtSince).toBe(iso(T0 + 6_000));
    expect(s.takeDeadLetters(PAYMENT)).toEqual([{ message: expect.objectContaining({ type: 'COMMIT', txId, participant: PAYMENT, attempt: 3 }), reason: expect.stringContaining('in doubt') }]);
    expect(s.takeDeadLetters(INVENTORY)).toEqual([]);
    // The group is past its close but not empty: its supervisor goes on.
    expect(T0 + 35_000).toBeLessThan(groupEndsAt(s.record(txId)));
    await s.timers.advanceTo(groupEndsAt(s.record(txId)) + 5_000);
    expect(s.supervisor(s.record(txId).og!)).toBe('RUNNING');
    await s.ack(txId, PAYMENT, 'COMMIT');
    expect(s.record(txId)).toMatchObject({ status: 'COMMITTED' });
    expect(s.record(txId).og).toBeUndefined();
  });

  it('ends its group only when the group is empty and closed', async () => {
    const s = memoryStack();
    const txId = await committed(s, [INVENTORY], 2);
    const group = s.record(txId).og!;
    const endsAt = groupEndsAt(s.record(txId));
    await s.ack(txId, INVENTORY, 'COMMIT');
    expect(s.record(txId).status).toBe('COMMITTED');
    await s.timers.advanceTo(endsAt - 1);
    // Empty, but a new transaction may still join it until it closes.
    expect(s.supervisor(group)).toBe('RUNNING');
    await s.timers.advanceTo(endsAt);
    expect(s.supervisor(group)).toBe('SUCCEEDED');
    expect(s.runs.at(-1)).toMatchObject({ done: true, lastRunAt: endsAt, report: { members: 0 } });
    // A handful of state transitions for the group's whole life, whatever happened in it: the first
    // Sleep, then three a run (Supervise, Route, Sleep or Done).
    expect(s.sfn.execution(executionArn(s.stateMachineArn, group))!.stateTransitions).toBeLessThanOrEqual(1 + 3 * s.runs.length);
  });

  it('parks a transaction waiting 10 minutes on one participant with that participant\'s supervisor, which probes, then re-sends in bulk', async () => {
    const s = memoryStack();
    const first = await committed(s, [INVENTORY, PAYMENT], 2);
    const second = await committed(s, [INVENTORY, PAYMENT], 2);
    for (const id of [first, second]) await s.ack(id, INVENTORY, 'COMMIT');
    const groups = [s.record(first).og!, s.record(second).og!];
    await s.timers.advanceTo(T0 + PARK_AFTER_MS + 60_000);
    for (const id of [first, second]) expect(s.record(id)).toMatchObject({ status: 'COMMITTING', og: 'park-payment', parkedWith: PAYMENT });
    expect(s.supervisor('park-payment')).toBe('RUNNING');
    // Their bucket groups are empty and closed now: their supervisors ended.
    for (const g of groups) expect(s.supervisor(g)).toBe('SUCCEEDED');
    // While payment is down, the parking supervisor probes it with one transaction only.
    const probes = s.take(PAYMENT).filter((m) => m.sentAtMs > T0 + PARK_AFTER_MS);
    expect(new Set(probes.map((m) => m.txId)).size).toBe(1);
    const probe = probes[0]!.txId;
    const other = probe === first ? second : first;
    // Payment is back: it acknowledges the probe, and the rest is re-sent at the next run.
    await s.ack(probe, PAYMENT, 'COMMIT');
    expect(s.record(probe).status).toBe('COMMITTED');
    await s.timers.advanceTo(s.now() + 60_000);
    expect(s.take(PAYMENT).map((m) => m.txId)).toContain(other);
    await s.ack(other, PAYMENT, 'COMMIT');
    expect(s.record(other).status).toBe('COMMITTED');
    await s.timers.advanceTo(s.now() + 60_000);
    expect(s.supervisor('park-payment')).toBe('SUCCEEDED');
  });
});

describe('re-sending in bulk', () => {
  it("sends a returning participant's parked transactions in one send once its probe is acknowledged, not one send each", async () => {
    const s = memoryStack();
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await committed(s, [INVENTORY, PAYMENT], 2));
    for (const id of ids) await s.ack(id, INVENTORY, 'COMMIT');
    await s.timers.advanceTo(T0 + PARK_AFTER_MS + 60_000);
    for (const id of ids) expect(s.record(id)).toMatchObject({ status: 'COMMITTING', og: 'park-payment' });
    const probe = s.take(PAYMENT).filter((m) => m.sentAtMs > T0 + PARK_AFTER_MS)[0]!.txId;
    const sends = vi.spyOn(MemoryParticipantQueues.prototype, 'send');
    try {
      await s.ack(probe, PAYMENT, 'COMMIT');
      await s.timers.advanceTo(s.now() + 60_000);
      const bulk = sends.mock.calls.filter(([messages]) => messages.length > 1);
      expect(bulk).toHaveLength(1);
      expect(bulk[0]![0].map((m) => m.txId).sort()).toEqual(ids.filter((id) => id !== probe).sort());
      expect(new Set(bulk[0]![0].map((m) => `${m.participant} ${m.type}`))).toEqual(new Set([`${PAYMENT} COMMIT`]));
    } finally {
      sends.mockRestore();
    }
    for (const id of ids.filter((id) => id !== probe)) await s.ack(id, PAYMENT, 'COMMIT');
    for (const id of ids) expect(s.record(id).status).toBe('COMMITTED');
  });
});

describe('continuing as a new execution', () => {
  it(`claims the next generation after ${RUNS_PER_EXECUTION} runs and starts it; a retried run claims nothing more`, async () => {
    const s = memoryStack();
    const txId = await s.start(s.body([INVENTORY], { prepareSeconds: 30, commitSeconds: 30 }));
    const group = s.record(txId).og!;
    const input = { group, gen: 0, runs: RUNS_PER_EXECUTION - 1, lastRunAt: T0 };
    // The run of generation 0 that ends it (its execution goes to Done after this run).
    const last = await superviseRun(s.coordinator, { ...s.supervisorDeps, workflow: s.sfn }, input);
    s.sfn.stop(executionArn(s.stateMachineArn, group));
    expect(last).toMatchObject({ done: true, runs: RUNS_PER_EXECUTION });
    expect(await s.log.readGroup(group)).toMatchObject({ gen: 1, execution: `${group}-g1` });
    expect(s.supervisor(`${group}-g1`)).toBe('RUNNING');
    expect(s.sfn.execution(executionArn(s.stateMachineArn, `${group}-g1`))!.input).toEqual({ group, gen: 1, wakeAt: iso(0) });
    const started = s.sfn.stats().executionsStarted;
    // The Lambda retried after a timeout: the same run again claims nothing and starts nothing.
    expect(await superviseRun(s.coordinator, { ...s.supervisorDeps, workflow: s.sfn }, input)).toMatchObject({ done: true });
    expect(s.sfn.stats().executionsStarted).toBe(started);
    expect(await s.log.readGroup(group)).toMatchObject({ gen: 1 });
    // The new generation supervises the group: it aborts the transaction at its deadline.
    await s.timers.advanceTo(T0 + 30_000);
    expect(s.record(txId)).toMatchObject({ status: 'ABORTING', decidedAt: iso(T0 + 30_000) });
    expect(s.runs.some((r) => r.gen === 1 && r.report.aborted === 1)).toBe(true);
  });
});

describe('ensureSupervisor', () => {
  /** A state machine whose executions wait an hour: what is running is under the test's control. */
  function setup() {
    const timers = new VirtualTimers(T0);
    const sfn = new MemoryStepFunctions({ timers, random: () => 0.5, handlers: { lambda: async () => ({}), dynamodb: async () => ({}) } });
    const arn = sfn.createStateMachine('dtc-supervisor', { StartAt: 'Hold', States: { Hold: { Type: 'Wait', Seconds: 3600, End: true } } });
    const log = new MemoryTxLog();
    const deps = { log, workflow: sfn, now: () => timers.now() };
    const status = (name: string) => sfn.execution(executionArn(arn, name))?.status ?? 'MISSING';
    return { timers, sfn, arn, log, deps, status };
  }
  const group = 'g-1795780800-10-3';

  it('starts generation 0 named after the group, once however often it is asked while it runs', async () => {
    const { sfn, arn, deps, status, log } = setup();
    expect(await ensureSupervisor(deps, arn, group)).toBe(group);
    expect(await ensureSupervisor(deps, arn, group)).toBe(group);
    expect(await Promise.all([1, 2, 3].map(() => ensureSupervisor(deps, arn, group)))).toEqual([group, group, group]);
    expect(status(group)).toBe('RUNNING');
    expect(sfn.stats().executionsStarted).toBe(1);
    expect(await log.readGroup(group)).toBeUndefined();
  });

  it('replaces a supervisor that ended by claiming the next generation; concurrent callers agree on one', async () => {
    const { sfn, arn, deps, status, log } = setup();
    await ensureSupervisor(deps, arn, group);
    sfn.stop(executionArn(arn, group));
    const answers = await Promise.all([1, 2, 3, 4].map(() => ensureSupervisor(deps, arn, group)));
    expect(answers).toEqual([`${group}-g1`, `${group}-g1`, `${group}-g1`, `${group}-g1`]);
    expect(status(`${group}-g1`)).toBe('RUNNING');
    expect(sfn.stats().executionsStarted).toBe(2);
    expect(await log.readGroup(group)).toMatchObject({ gen: 1, execution: `${group}-g1` });
    // While generation 1 runs, everyone is told so.
    expect(await ensureSupervisor(deps, arn, group)).toBe(`${group}-g1`);
    // Generation 1 ends too: generation 2.
    sfn.stop(executionArn(arn, `${group}-g1`));
    expect(await ensureSupervisor(deps, arn, group)).toBe(`${group}-g2`);
    expect(sfn.stats().executionsStarted).toBe(3);
  });

  it('starts a generation that was claimed but never started (a crash between the claim and the start)', async () => {
    const { sfn, arn, deps, status, log } = setup();
    await ensureSupervisor(deps, arn, group);
    sfn.stop(executionArn(arn, group));
    await log.claimGroup(group, 0, iso(T0));
    expect(status(`${group}-g1`)).toBe('MISSING');
    expect(await ensureSupervisor(deps, arn, group)).toBe(`${group}-g1`);
    expect(status(`${group}-g1`)).toBe('RUNNING');
  });
});

describe('a retried supervisor start', () => {
  it('changes no decision: a repeated run, a repeated start and a restart after a crash leave every decision as it was', async () => {
    const s = memoryStack();
    const decided = await committed(s, [INVENTORY, PAYMENT], 2);
    const undecided = await s.start(s.body([SHIPPING, ORDER], { prepareSeconds: 5, commitSeconds: 2 }));
    await s.vote(undecided, SHIPPING, 'YES');
    for (const p of SERVICES) s.take(p);
    const group = s.record(decided).og!;
    expect(s.record(undecided).og).toBeDefined();
    const before = { decision: s.record(decided).decision, decidedAt: s.record(decided).decidedAt };

    // The same run twice (a Lambda retried after its first attempt did complete).
    await s.timers.advanceTo(T0 + 5_000);
    const input = { group, gen: 0, runs: 3, lastRunAt: T0 + 4_000 };
    await superviseRun(s.coordinator, { ...s.supervisorDeps, workflow: s.sfn }, input);
    const afterFirst = [s.record(decided), s.record(undecided)];
    await superviseRun(s.coordinator, { ...s.supervisorDeps, workflow: s.sfn }, input);
    expect([s.record(decided), s.record(undecided)].map((r) => [r.status, r.decision, r.decidedAt])).toEqual(afterFirst.map((r) => [r.status, r.decision, r.decidedAt]));

    // A start retried while the supervisor runs.
    const started = s.sfn.stats().executionsStarted;
    expect(await ensureSupervisor({ ...s.supervisorDeps, workflow: s.sfn }, s.stateMachineArn, group)).toBe(group);
    expect(s.sfn.stats().executionsStarted).toBe(started);

    // Step Functions lost everything (the local stack restarted): a new start supervises the same decisions.
    s.sfn.crash();
    expect(s.supervisor(group)).toBe('MISSING');
    expect(await ensureSupervisor({ ...s.supervisorDeps, workflow: s.sfn }, s.stateMachineArn, group)).toBe(group);
    await s.timers.advanceTo(T0 + 6_000);
    expect(s.record(decided)).toMatchObject({ status: 'COMMITTING', ...before });
    // Its first run re-sends what is due of the same decision.
    expect(s.take(INVENTORY).map((m) => m.type)).toContain('COMMIT');
    expect(s.take(PAYMENT).map((m) => m.type)).toContain('COMMIT');
    await s.ack(decided, INVENTORY, 'COMMIT');
    await s.ack(decided, PAYMENT, 'COMMIT');
    expect(s.record(decided)).toMatchObject({ status: 'COMMITTED', ...before });
  });
});
