// The demo shop's shared transaction answers (src/local/demo-routes.ts): concurrent asks for one
// transaction make one request, an answer serves for its time to live, a failed ask is not kept,
// and an abort always goes through and forgets the answer.
import { describe, expect, it } from 'vitest';
import { sharedAnswers } from '../../src/local/demo-routes';
import type { TransactionPort, TxFacts } from '../../src/locks/transactions';

function counting(status: () => TxFacts['status'] | Error) {
  const asked: string[] = [];
  const aborted: string[] = [];
  const port: TransactionPort = {
    async get(txId) {
      asked.push(txId);
      const s = status();
      if (s instanceof Error) throw s;
      return { txId, status: s, createdAt: '2026-11-30T00:00:00.000Z' };
    },
    async abort(txId) {
      aborted.push(txId);
      return { applied: true, record: { txId, status: 'ABORTING', createdAt: '2026-11-30T00:00:00.000Z' } };
    },
  };
  return { port, asked, aborted };
}

describe('sharedAnswers', () => {
  it('asks once for concurrent and recent questions about one transaction, and again once the answer is older than its time to live', async () => {
    let clock = 0;
    let status: TxFacts['status'] = 'PREPARING';
    const inner = counting(() => status);
    const shared = sharedAnswers(inner.port, 250, () => clock);
    const answers = await Promise.all([shared.get('tx-00000001'), shared.get('tx-00000001'), shared.get('tx-00000002')]);
    expect(answers.map((a) => a?.status)).toEqual(['PREPARING', 'PREPARING', 'PREPARING']);
    expect(inner.asked).toEqual(['tx-00000001', 'tx-00000002']);
    clock = 249;
    status = 'ABORTING';
    expect((await shared.get('tx-00000001'))?.status).toBe('PREPARING');
    clock = 250;
    expect((await shared.get('tx-00000001'))?.status).toBe('ABORTING');
    expect(inner.asked).toEqual(['tx-00000001', 'tx-00000002', 'tx-00000001']);
  });

  it('does not keep a failed ask, and an abort goes through and forgets the answer', async () => {
    let answer: TxFacts['status'] | Error = new Error('timed out');
    const inner = counting(() => answer);
    const shared = sharedAnswers(inner.port, 1_000, () => 0);
    await expect(shared.get('tx-00000003')).rejects.toThrow('timed out');
    answer = 'PREPARING';
    expect((await shared.get('tx-00000003'))?.status).toBe('PREPARING');
    expect((await shared.abort('tx-00000003', 'victim')).applied).toBe(true);
    expect((await shared.abort('tx-00000003', 'victim')).applied).toBe(true);
    expect(inner.aborted).toEqual(['tx-00000003', 'tx-00000003']);
    answer = 'ABORTING';
    expect((await shared.get('tx-00000003'))?.status).toBe('ABORTING');
    expect(inner.asked).toEqual(['tx-00000003', 'tx-00000003', 'tx-00000003']);
  });
});
