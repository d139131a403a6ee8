// The embedded SQS (fauxqs on its worker, src/local/sqs-worker.mjs) as SQS long polling behaves: a
// message that arrives wakes one waiting ReceiveMessage, and the other receivers go on waiting
// instead of answering at once with nothing (which fauxqs itself does: every waiter wakes).
import { ReceiveMessageCommand, SendMessageCommand, type Message } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startLocalAws, type LocalAws } from '../support/aws';

let aws: LocalAws;
beforeAll(async () => {
  aws = await startLocalAws({ sqs: true });
}, 60_000);
afterAll(() => aws?.stop());

describe('long polling on the embedded SQS', () => {
  it('wakes one waiting receiver per message; the others keep waiting rather than answer empty', async () => {
    const queueUrl = await aws.scratchQueue('long-poll');
    const answers: (Message[] | undefined)[] = [];
    const abort = new AbortController();
    const receivers = Array.from({ length: 3 }, () =>
      aws.sqs
        .send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 20, MaxNumberOfMessages: 10 }), { abortSignal: abort.signal })
        .then((out) => answers.push(out.Messages))
        .catch(() => undefined),
    );
    await aws.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'first' }));
    await vi.waitFor(() => expect(answers.length).toBeGreaterThanOrEqual(1));
    await aws.sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: 'second' }));
    await vi.waitFor(() => expect(answers.filter((a) => a?.length).length).toBe(2));
    // Every answer so far carried a message: nobody was woken to find nothing.
    expect(answers.map((a) => a?.map((m) => m.Body))).toEqual([['first'], ['second']]);
    abort.abort();
    await Promise.all(receivers);
  });
});
