// Waiting helpers shared by every e2e target. Not a test file itself.
import { GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { TxView } from '../../src/core/transaction';

type Request = (method: string, path: string) => Promise<{ status: number; body: any }>;

/** Poll GET /transactions/{id} until the transaction has ended. */
export async function pollUntilEnded(request: Request, txId: string, timeoutMs: number, intervalMs: number, startedAt = Date.now()): Promise<TxView> {
  const until = startedAt + timeoutMs;
  for (;;) {
    const res = await request('GET', `/transactions/${txId}`);
    if (res.status === 200 && (res.body.status === 'COMMITTED' || res.body.status === 'ABORTED')) return res.body as TxView;
    if (Date.now() > until) throw new Error(`transaction ${txId} did not end within ${timeoutMs} ms: ${JSON.stringify(res.body)}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Wait until every queue not matching `ignore` is empty (nothing visible, nothing in flight). */
export async function waitForQuietQueues(queueDepths: () => Promise<Record<string, number>>, timeoutMs: number, ignore: RegExp, intervalMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const busy = Object.entries(await queueDepths()).filter(([name, depth]) => depth > 0 && !ignore.test(name));
    if (busy.length === 0) return;
    if (Date.now() > until) throw new Error(`queues not quiet after ${timeoutMs} ms: ${JSON.stringify(Object.fromEntries(busy))}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Messages in each queue (name -> visible + in flight). */
export async function queueDepths(sqs: SQSClient, queues: Record<string, string>): Promise<Record<string, number>> {
  const entries = await Promise.all(
    Object.entries(queues).map(async ([name, QueueUrl]) => {
      const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
      return [name, Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) + Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)] as const;
    }),
  );
  return Object.fromEntries(entries);
}
