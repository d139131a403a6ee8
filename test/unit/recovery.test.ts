// Recovery rules that keep the items beside a long-open record alive (src/core/recovery.ts,
// keepAliveDue) and the supervisor run that applies them.
import { describe, expect, it } from 'vitest';
import { KEEP_ALIVE_EVERY_MS, keepAliveDue } from '../../src/core/recovery';
import { OPS_EXTRA_DAYS } from '../../src/core/transaction';
import { superviseRun } from '../../src/supervisor';
import { SERVICES, T0, memoryStack } from './memory-stack';

const DAY_MS = 86_400_000;

describe('keepAliveDue', () => {
  it('is due once per point created + k * 30 days, and at a first run past any point', () => {
    const c = T0;
    expect(KEEP_ALIVE_EVERY_MS).toBe(OPS_EXTRA_DAYS * DAY_MS);
    expect(keepAliveDue(c, undefined, c + KEEP_ALIVE_EVERY_MS - 1)).toBe(false);
    expect(keepAliveDue(c, undefined, c + KEEP_ALIVE_EVERY_MS)).toBe(true);
    expect(keepAliveDue(c, c + KEEP_ALIVE_EVERY_MS - 1, c + KEEP_ALIVE_EVERY_MS)).toBe(true);
    expect(keepAliveDue(c, c + KEEP_ALIVE_EVERY_MS, c + KEEP_ALIVE_EVERY_MS + 60_000)).toBe(false);
    expect(keepAliveDue(c, c + 2 * KEEP_ALIVE_EVERY_MS - 60_000, c + 2 * KEEP_ALIVE_EVERY_MS)).toBe(true);
  });
});

describe('a supervisor run over a transaction open for 30 days', () => {
  it('keeps its operations item and idempotency key for another retention + 30 days, once per point', async () => {
    const s = memoryStack({ supervise: false });
    const started = await s.coordinator.start(s.body(SERVICES, { prepareSeconds: 10, commitSeconds: 30 }), 'key-long');
    if (started.kind !== 'started') throw new Error(JSON.stringify(started));
    const { txId } = started;
    // Decided, and one participant never answers: open for weeks.
    for (const p of SERVICES.slice(0, 3)) await s.vote(txId, p, 'YES');
    await s.timers.advanceTo(T0 + 20_000);
    await s.coordinator.drive(s.record(txId), false);
    expect(s.record(txId).status).toBe('ABORTING');
    const group = s.record(txId).og!;
    const keyExpiry = async () => (await s.log.claimIdempotencyKey('key-long', 'x', 'x', 'x', 1)).expiresAt;
    expect(await keyExpiry()).toBe(Math.floor(T0 / 1000) + 60 * 86_400);

    const at = T0 + KEEP_ALIVE_EVERY_MS + 1_000;
    await s.timers.advanceTo(at);
    await superviseRun(s.coordinator, s.supervisorDeps, { group, gen: 0, runs: 0, lastRunAt: at - 60_000 });
    const kept = Math.floor(at / 1000) + 60 * 86_400;
    expect(await keyExpiry()).toBe(kept);
    expect((await s.log.getOps(txId))!.expiresAt).toBe(kept);
    // The next run, past no new point, writes nothing more.
    await s.timers.advanceTo(at + 60_000);
    await superviseRun(s.coordinator, s.supervisorDeps, { group, gen: 0, runs: 1, lastRunAt: at });
    expect(await keyExpiry()).toBe(kept);
  });
});
