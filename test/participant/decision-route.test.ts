// One reader of GET /transactions/{id}/decision for the in-doubt inquiry and a participant's lock
// service: the coordinator's own 404 is "no record", any other 404 or answer throws.
import { describe, expect, it } from 'vitest';
import { apiTransactions } from '../../src/locks/transactions';
import { apiDecisions } from '../../src/participant/decisions';

const respond = (status: number, body: unknown) => async () => new Response(JSON.stringify(body), { status });
const TX = 'tx-00000042';
const found = { txId: TX, status: 'COMMITTING', createdAt: '2026-11-30T00:00:00.000Z', decision: 'COMMIT' };
const notFound = { error: { code: 'NotFound', message: `no transaction ${TX}` } };

describe("the decision route's one reader", () => {
  it('gives the lock service the facts, undefined only for the coordinator\'s own 404, and throws on a 404 from anywhere else', async () => {
    const get = (f: () => Promise<Response>) => apiTransactions({ baseUrl: 'http://coordinator.test/v1/', fetch: f as typeof fetch }).get(TX);
    expect(await get(respond(200, found))).toEqual({ txId: TX, status: 'COMMITTING', createdAt: found.createdAt });
    expect(await get(respond(404, notFound))).toBeUndefined();
    // A wrong base URL must never read as "no record": a lock service would take over a committing owner's locks.
    await expect(get(respond(404, { message: 'Not Found' }))).rejects.toThrow(/not the coordinator's/);
    await expect(get(respond(500, { error: 'boom' }))).rejects.toThrow(/answered 500/);
  });

  it('reads the abort route\'s 404 by the same rule: only the coordinator\'s own is "no record"', async () => {
    const abort = (f: () => Promise<Response>) => apiTransactions({ baseUrl: 'http://coordinator.test/v1', fetch: f as typeof fetch }).abort(TX, 'deadlock victim');
    expect(await abort(respond(404, notFound))).toEqual({ applied: false, record: undefined });
    // A proxy's or a missing route's 404 must not read as "no such transaction": the lock service would free the lock.
    await expect(abort(respond(404, { message: 'Not Found' }))).rejects.toThrow(/not the coordinator's/);
    expect(await abort(respond(202, { decidedNow: true, transaction: found }))).toEqual({ applied: true, record: { txId: TX, status: 'COMMITTING', createdAt: found.createdAt } });
  });

  it('gives the inquiry the same answers, as decisions', async () => {
    const read = (f: () => Promise<Response>) => apiDecisions({ baseUrl: 'http://coordinator.test/v1', fetch: f as typeof fetch }).read(TX);
    expect(await read(respond(200, found))).toBe('COMMIT');
    expect(await read(respond(404, notFound))).toBe('ABORT');
    await expect(read(respond(404, { message: 'Not Found' }))).rejects.toThrow(/not the coordinator's/);
  });
});
