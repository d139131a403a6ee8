// The meter's counters as the benchmark reads them: SQS requests in 64 KB chunks, Lambda billed
// time and log bytes by function (from handlers' own writes to stdout), API requests by route.
import { Console } from 'node:console';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CreateQueueCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { LocalApiGateway } from '../../src/local/apigateway';
import { LocalLambda, platformLogBytes } from '../../src/local/lambda';
import { Meter } from '../../src/local/meter';
import { startSqs, type LocalSqs } from '../../src/local/sqs';

describe('SQS requests', () => {
  const meter = new Meter();
  let sqs: LocalSqs;
  let client: SQSClient;
  beforeAll(async () => {
    sqs = await startSqs({ meter });
    client = new SQSClient({ endpoint: sqs.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  });
  afterAll(async () => {
    client?.destroy();
    await sqs?.stop();
  });

  const counted = (queue: string, operation: string) =>
    meter.snapshot().find((r) => r.service === 'sqs' && r.operation === operation && r.resource === queue)?.count ?? 0;

  it('counts each 64 KB chunk of the payload sent or received as one request', async () => {
    const { QueueUrl } = await client.send(new CreateQueueCommand({ QueueName: 'metered' }));
    await client.send(new SendMessageCommand({ QueueUrl, MessageBody: 'small' }));
    await vi.waitFor(() => expect(counted('metered', 'SendMessage')).toBe(1));
    await client.send(new SendMessageCommand({ QueueUrl, MessageBody: 'x'.repeat(100 * 1024) }));
    await vi.waitFor(() => expect(counted('metered', 'SendMessage')).toBe(1 + 2));
  });

  it('counts a receive by the messages it returns', async () => {
    const { QueueUrl } = await client.send(new CreateQueueCommand({ QueueName: 'received' }));
    await client.send(new SendMessageCommand({ QueueUrl, MessageBody: 'y'.repeat(100 * 1024) }));
    const out = await client.send(new ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    expect(out.Messages).toHaveLength(1);
    await vi.waitFor(() => expect(counted('received', 'ReceiveMessage')).toBe(2));
  });
});

describe('Lambda', () => {
  it('counts invocations, billed milliseconds and the bytes a handler logs, by function, and can keep them off the terminal', async () => {
    const meter = new Meter();
    const lambda = new LocalLambda(process.cwd(), { meter });
    lambda.register({
      name: 'noisy',
      arn: 'arn:aws:lambda:us-east-1:000000000000:function:noisy',
      entry: 'unused.ts',
      timeoutSeconds: 3,
      memoryMb: 512,
      handler: async () => {
        await new Promise((r) => setTimeout(r, 5));
        process.stdout.write('x'.repeat(100));
        // as Powertools' Logger writes: a Console of its own on process.stdout
        new Console({ stdout: process.stdout, stderr: process.stderr }).log('done'); // 5 bytes with the newline
        return 'ok';
      },
    });
    // Spied before the tap is installed, so the spy sees what the tap lets through to the stream.
    const written = vi.spyOn(process.stdout, 'write');
    lambda.meterLogs({ echo: false });
    await lambda.invoke('noisy', {});
    process.stdout.write(''); // outside any invocation: not counted
    const [row] = meter.reading().lambda;
    expect(row).toMatchObject({ fn: 'noisy', invocations: 1, logBytes: 105 });
    expect(row!.billedMs).toBeGreaterThanOrEqual(5);
    expect(row!.platformLogBytes).toBeGreaterThan(200);
    // Echo off: the handler's writes never reached the stream; the write outside the invocation did.
    expect(written.mock.calls.map(([chunk]) => String(chunk))).toEqual(['']);
  });

  it("sizes Lambda's START, END and REPORT lines as it writes them", () => {
    const id = '8f5a3c1e-0000-4000-8000-000000000000';
    const expected = [
      `START RequestId: ${id} Version: $LATEST\n`,
      `END RequestId: ${id}\n`,
      `REPORT RequestId: ${id}\tDuration: 12.35 ms\tBilled Duration: 13 ms\tMemory Size: 512 MB\tMax Memory Used: 100 MB\t\n`,
    ].join('');
    expect(platformLogBytes(id, 12.345, { memoryMb: 512 })).toBe(Buffer.byteLength(expected));
  });
});

describe('API Gateway', () => {
  it('counts requests by method and route', async () => {
    const meter = new Meter();
    const api = new LocalApiGateway({ auth: false, meter });
    api.addRoute({ method: 'GET', resource: '/things/{id}', invoke: async () => ({ statusCode: 200, body: '{}' }) });
    const url = await api.listen(0);
    try {
      await fetch(`${url}/things/1`);
      await fetch(`${url}/things/2`);
      await fetch(`${url}/nothing`);
    } finally {
      await api.stop();
    }
    expect(meter.snapshot().filter((r) => r.service === 'apigateway')).toEqual([{ service: 'apigateway', operation: 'GET', resource: '/things/{id}', count: 2 }]);
  });
});
