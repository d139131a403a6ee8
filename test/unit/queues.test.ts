// The coordinator's side of the participants' queues: one message per queue, and in-doubt copies in
// the dead-letter queues with the reason, against a recording SQS client.
import type { SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { ParticipantQueues } from '../../src/aws/queues';
import type { ParticipantMessage } from '../../src/core/messages';

function recordingSqs() {
  const sent: { QueueUrl: string; MessageBody: string; MessageAttributes?: Record<string, { DataType: string; StringValue: string }> }[] = [];
  const client = { send: async (command: { input: (typeof sent)[number] }) => void sent.push(command.input) } as unknown as SQSClient;
  return { client, sent };
}

const commit = (participant: string): ParticipantMessage => ({ v: 1, type: 'COMMIT', txId: 'tx-1', participant, deadlineAt: 1, attempt: 3 });

describe('ParticipantQueues', () => {
  it('sends each message to its participant\'s queue, and refuses an unknown participant', async () => {
    const { client, sent } = recordingSqs();
    const queues = new ParticipantQueues({ inventory: 'q-inv', payment: 'q-pay' }, client);
    await queues.send([commit('inventory'), commit('payment')]);
    expect(sent.map((s) => [s.QueueUrl, JSON.parse(s.MessageBody).participant])).toEqual([
      ['q-inv', 'inventory'],
      ['q-pay', 'payment'],
    ]);
    await expect(queues.send([commit('shipping')])).rejects.toThrow(/no request queue is configured for participant 'shipping'/);
  });

  it('puts in-doubt copies in the dead-letter queues with the reason, and names participants that have none', async () => {
    const { client, sent } = recordingSqs();
    const queues = new ParticipantQueues({ inventory: 'q-inv', payment: 'q-pay' }, client, { inventory: 'dlq-inv' });
    const long = `in doubt: ${'x'.repeat(2_000)}`;
    const missing = await queues.deadLetter([commit('inventory'), commit('payment')], long);
    expect(missing).toEqual(['payment']);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.QueueUrl).toBe('dlq-inv');
    expect(JSON.parse(sent[0]!.MessageBody)).toEqual(commit('inventory'));
    const attributes = sent[0]!.MessageAttributes!;
    expect(attributes['dtc-participant']!.StringValue).toBe('inventory');
    expect(attributes['dtc-source']!.StringValue).toBe('coordinator');
    // Reasons are cut to a sentence's length, marked as cut.
    expect(attributes['dtc-reason']!.StringValue).toHaveLength(1_000);
    expect(attributes['dtc-reason']!.StringValue.endsWith('…')).toBe(true);
  });
});
