// The benchmark's cost and capacity model: list prices times measured use, quota over use per
// transaction, the template readers, and who pays for an SQS request.
import { describe, expect, it } from 'vitest';
import {
  apiKind,
  atRate,
  capacity,
  capacityRows,
  costLines,
  costPerMillionUsd,
  functionConfigs,
  sqsSide,
  type ModelInput,
  type PerTransaction,
} from '../../bench/model';

const nothing: PerTransaction = {
  stateTransitions: 0,
  startExecutions: 0,
  taskCallbacks: 0,
  lambdaInvocations: 0,
  dynamodbWriteUnits: 0,
  dynamodbReadUnits: 0,
  sqsRequests: 0,
  apiRequests: 0,
  eventsPublished: 0,
  logBytes: 0,
};

function input(overrides: Partial<Omit<ModelInput, 'perTransaction'>> & { perTransaction?: Partial<PerTransaction> } = {}): ModelInput {
  return {
    functions: [],
    apiKind: 'HTTP',
    taskResults: 0,
    taskHeartbeats: 0,
    putEventsRequests: 0,
    busiestTable: { name: 'log', writeUnitsPerTransaction: 0 },
    hottestKey: { table: 'log', index: null, key: 'tx-1', writeUnitsPerTransaction: 0 },
    ...overrides,
    perTransaction: { ...nothing, ...overrides.perTransaction },
  };
}

const line = (i: ModelInput, item: string) => costLines(i).find((l) => l.item.startsWith(item))!.usdPerMillion;

describe('cost per million transactions', () => {
  it('prices each measured use at its us-east-1 list price', () => {
    const i = input({ perTransaction: { stateTransitions: 5, dynamodbWriteUnits: 12, dynamodbReadUnits: 2, sqsRequests: 10, apiRequests: 1, lambdaInvocations: 3, eventsPublished: 1 } });
    expect(line(i, 'Step Functions')).toBeCloseTo(125, 6);
    expect(line(i, 'DynamoDB writes')).toBeCloseTo(7.5, 6);
    expect(line(i, 'DynamoDB reads')).toBeCloseTo(0.25, 6);
    expect(line(i, 'SQS')).toBeCloseTo(4, 6);
    expect(line(i, 'API Gateway')).toBeCloseTo(1, 6);
    expect(line(i, 'Lambda requests')).toBeCloseTo(0.6, 6);
    expect(line(i, 'EventBridge')).toBeCloseTo(1, 6);
    expect(costPerMillionUsd(i)).toBeCloseTo(125 + 7.5 + 0.25 + 4 + 1 + 0.6 + 1, 6);
  });

  it('at a sustained rate, spreads supervision (per group) over that rate and keeps every other use as measured', () => {
    const supervision = { shards: 8, bucketSeconds: 10, transitionsPerGroup: 7, apiSecondsPerTransaction: 0.02 };
    const measured = input({ supervision, perTransaction: { stateTransitions: 0.7, startExecutions: 0.08, dynamodbWriteUnits: 20, sqsRequests: 19 } });
    const at3000 = atRate(measured, 3_000);
    // 0.8 groups a second x 7 transitions = 5.6 a second, over 3,000 transactions a second.
    expect(at3000.perTransaction.stateTransitions).toBeCloseTo(5.6 / 3_000, 9);
    expect(at3000.perTransaction.startExecutions).toBeCloseTo(0.8 / 3_000, 9);
    expect(line(at3000, 'Step Functions')).toBeCloseTo((5.6 / 3_000) * 25, 6);
    expect(line(at3000, 'DynamoDB writes')).toBe(line(measured, 'DynamoDB writes'));
    expect(line(at3000, 'SQS')).toBe(line(measured, 'SQS'));
    // Without supervision there is nothing per group.
    expect(atRate(input({ perTransaction: { stateTransitions: 5 } }), 3_000).perTransaction.stateTransitions).toBe(5);
  });

  it('prices a REST API request at $3.50 per million and an HTTP API request at $1.00', () => {
    expect(line(input({ apiKind: 'REST', perTransaction: { apiRequests: 1 } }), 'API Gateway')).toBeCloseTo(3.5, 6);
    expect(line(input({ apiKind: 'HTTP', perTransaction: { apiRequests: 1 } }), 'API Gateway')).toBeCloseTo(1, 6);
  });

  it('prices Lambda duration in GB-seconds at the configured memory and architecture', () => {
    // 100 ms at 512 MB = 0.05 GB-s per transaction; a million of them on Arm: 50,000 GB-s x $0.0000133334.
    const arm = input({ functions: [{ name: 'f', memoryMb: 512, architecture: 'arm64', invocations: 1, billedMs: 100 }] });
    expect(line(arm, 'Lambda duration')).toBeCloseTo(50_000 * 0.0000133334, 6);
    const x86 = input({ functions: [{ name: 'f', memoryMb: 1024, architecture: 'x86_64', invocations: 1, billedMs: 100 }] });
    expect(line(x86, 'Lambda duration')).toBeCloseTo(100_000 * 0.0000166667, 6);
  });

  it('prices log ingestion at $0.50 per GB', () => {
    // 1,074 bytes per transaction is about 1 GB (2^30 bytes) per million.
    expect(line(input({ perTransaction: { logBytes: 2 ** 30 / 1e6 } }), 'CloudWatch Logs')).toBeCloseTo(0.5, 6);
  });
});

describe('capacity', () => {
  it('divides each quota by the use per transaction; the smallest binds', () => {
    const i = input({
      perTransaction: { startExecutions: 1, stateTransitions: 5, apiRequests: 1 },
      taskResults: 2,
      busiestTable: { name: 'log', writeUnitsPerTransaction: 12 },
      hottestKey: { table: 'log', index: null, key: 'tx-1', writeUnitsPerTransaction: 0.001 },
    });
    const rows = Object.fromEntries(capacityRows(i).map((r) => [r.id, r.txPerSecond]));
    expect(rows.dynamodbTableWrites).toBeCloseTo(40_000 / 12, 6);
    expect(rows.dynamodbPartitionWrites).toBeCloseTo(1_000_000, 3);
    expect(rows.startExecution).toBe(300);
    expect(rows.stateTransitions).toBe(1_000);
    expect(rows.sendTaskResult).toBe(250);
    expect(rows.apiRequests).toBe(10_000);
    // unused, or unlimited: no figure
    expect(rows.sendTaskHeartbeat).toBeNull();
    expect(rows.sqsRequests).toBeNull();
    expect(capacity(i).defaultQuotas).toEqual({ txPerSecond: 250, bindingQuota: 'Step Functions SendTaskSuccess/SendTaskFailure refill (us-east-1)' });
  });

  it('uses invocations times duration for Lambda concurrency', () => {
    const i = input({ functions: [{ name: 'f', memoryMb: 512, architecture: 'arm64', invocations: 4, billedMs: 200 }] });
    expect(capacity(i).defaultQuotas).toEqual({ txPerSecond: 5_000, bindingQuota: 'Lambda concurrent executions per account-region' });
  });

  it('applies only the raises of quotas the transaction uses, and cannot raise the per-partition ceiling', () => {
    const i = input({
      busiestTable: { name: 'log', writeUnitsPerTransaction: 20 },
      hottestKey: { table: 'log', index: 'open', key: 'OPEN', writeUnitsPerTransaction: 20 },
      perTransaction: { apiRequests: 1 },
    });
    const { defaultQuotas, raisedQuotas } = capacity(i);
    expect(defaultQuotas).toEqual({ txPerSecond: 50, bindingQuota: 'DynamoDB write units per partition key value' });
    expect(raisedQuotas.txPerSecond).toBe(50);
    expect(raisedQuotas.raises).toEqual(['DynamoDB table-level write throughput 40,000 -> 300,000 WRU/s', 'API Gateway account throttle 10,000 -> 30,000 requests/s']);
  });

  describe('with supervision by groups', () => {
    // 8 shards x 10 s buckets; a group key measured at 2/8 WRU per transaction while current.
    const supervised = (hottestOther = 0.03) =>
      input({
        busiestTable: { name: 'log', writeUnitsPerTransaction: 12 },
        hottestKey: { table: 'log', index: 'open', key: 'g-1796029950-10-7', writeUnitsPerTransaction: 0.25 },
        hottestOtherKeyWriteUnits: hottestOther,
        supervision: { shards: 8, bucketSeconds: 10, transitionsPerGroup: 7, apiSecondsPerTransaction: 0.05 },
        perTransaction: { apiRequests: 1, startExecutions: 0.1, stateTransitions: 0.8 },
      });

    it('models StartExecution and state transitions per group whatever the rate, and the group claims per api instance and group', () => {
      const rows = Object.fromEntries(capacityRows(supervised()).map((r) => [r.id, r]));
      // One start per group: 0.8 groups/s, far under 300/s at any rate; the use shown is as measured.
      expect(rows.startExecution!.usePerTransaction).toBe(0.1);
      expect(rows.startExecution!.txPerSecond).toBeNull();
      // Every api instance claims every group: (8 / 10 s) x 0.05 s = 0.04 write units per transaction more.
      expect(rows.dynamodbTableWrites!.usePerTransaction).toBeCloseTo(12.04, 9);
      // 0.8 groups/s x 7 transitions: far under 5,000/s at any rate.
      expect(rows.stateTransitions!.txPerSecond).toBeNull();
      expect(rows.dynamodbPartitionWrites!.txPerSecond).toBeCloseTo(4_000, 6);
      // A group key cools as 1/Z; the hottest other key does not.
      const wide = Object.fromEntries(capacityRows(supervised(), undefined, 64).map((r) => [r.id, r]));
      expect(wide.dynamodbPartitionWrites!.usePerTransaction).toBeCloseTo(0.25 / 8, 9);
      expect(Object.fromEntries(capacityRows(supervised(0.05), undefined, 64).map((r) => [r.id, r.usePerTransaction])).dynamodbPartitionWrites).toBe(0.05);
      expect(wide.dynamodbTableWrites!.usePerTransaction).toBeCloseTo(12 + 6.4 * 0.05, 9);
      // A group's own item takes each instance's claim while its bucket is current: 0.05 s / 10 s.
      const slowApi = input({ ...supervised(0), supervision: { shards: 8, bucketSeconds: 10, transitionsPerGroup: 7, apiSecondsPerTransaction: 20 } });
      expect(Object.fromEntries(capacityRows(slowApi, undefined, 64).map((r) => [r.id, r.usePerTransaction])).dynamodbPartitionWrites).toBe(2);
      // Transitions and starts bind only if the groups alone exceed the quota.
      const busy = input({ ...supervised(), supervision: { shards: 8, bucketSeconds: 1, transitionsPerGroup: 1_000, apiSecondsPerTransaction: 0.05 } });
      expect(Object.fromEntries(capacityRows(busy).map((r) => [r.id, r.txPerSecond])).stateTransitions).toBe(0);
      expect(Object.fromEntries(capacityRows(busy).map((r) => [r.id, r.txPerSecond])).startExecution).toBeNull();
      const crowded = input({ ...supervised(), supervision: { shards: 400, bucketSeconds: 1, transitionsPerGroup: 7, apiSecondsPerTransaction: 0.05 } });
      expect(Object.fromEntries(capacityRows(crowded).map((r) => [r.id, r.txPerSecond])).startExecution).toBe(0);
    });

    it('picks the shard count the raised quotas serve best, and names it among the raises', () => {
      const { raisedQuotas } = capacity(supervised());
      // Group keys: 500 x Z tx/s; the table: 300,000 / (12 + Z / 10 x 0.05). Z = 64: 32,000 and 24,351.
      expect(raisedQuotas.bindingQuota).toMatch(/per on-demand table/);
      expect(raisedQuotas.txPerSecond).toBeCloseTo(300_000 / (12 + 6.4 * 0.05), 6);
      expect(raisedQuotas.raises).toContain('context supervisionShards 8 -> 64 (a setting, not a quota: the open index\'s group keys, 2 write units per transaction on one of Z keys)');
    });
  });
});

describe('the synthesized template', () => {
  const stack = (resources: Record<string, { Type: string; Properties?: Record<string, unknown> }>) => [{ stackName: 'S', template: { Resources: resources } }];

  it('reads the API kind: an ApiGatewayV2 API is HTTP, a RestApi REST, anything else an error', () => {
    expect(apiKind(stack({ Api: { Type: 'AWS::ApiGatewayV2::Api' } }))).toBe('HTTP');
    expect(apiKind(stack({ Api: { Type: 'AWS::ApiGateway::RestApi' } }))).toBe('REST');
    expect(() => apiKind(stack({}))).toThrow(/neither/);
  });

  it("reads each function's memory and architecture under the name the embedded stack gives it", () => {
    const configs = functionConfigs(
      stack({
        Fn: { Type: 'AWS::Lambda::Function', Properties: { MemorySize: 512, Architectures: ['arm64'] } },
        Named: { Type: 'AWS::Lambda::Function', Properties: { FunctionName: 'named' } },
      }),
    );
    expect(configs.get('S-Fn')).toEqual({ memoryMb: 512, architecture: 'arm64' });
    expect(configs.get('named')).toEqual({ memoryMb: 128, architecture: 'x86_64' });
  });
});

describe('who pays for an SQS request', () => {
  const queues = { requestQueues: new Set(['inventory-requests']), replyQueues: new Set(['replies']) };

  it("counts the coordinator's sends to request queues and its reply consumer's polling as the coordinator's", () => {
    expect(sqsSide('SendMessage', 'inventory-requests', queues)).toBe('coordinator');
    expect(sqsSide('SendMessageBatch', 'inventory-requests', queues)).toBe('coordinator');
    expect(sqsSide('ReceiveMessage', 'replies', queues)).toBe('coordinator');
    expect(sqsSide('DeleteMessageBatch', 'replies', queues)).toBe('coordinator');
    expect(sqsSide('SendMessage', 'inventory-dlq', queues)).toBe('coordinator');
  });

  it("counts participants' consumption of their request queues and their replies as the participants'", () => {
    expect(sqsSide('ReceiveMessage', 'inventory-requests', queues)).toBe('participant');
    expect(sqsSide('DeleteMessage', 'inventory-requests', queues)).toBe('participant');
    expect(sqsSide('ChangeMessageVisibility', 'inventory-requests', queues)).toBe('participant');
    expect(sqsSide('SendMessage', 'replies', queues)).toBe('participant');
  });
});
