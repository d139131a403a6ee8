// Template tests: what the design depends on (DLQs, TLS, PITR, retain, timeouts on every Task,
// the state names the local stack drives, one shared environment), not a snapshot of everything.
import { createRequire } from 'node:module';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp, loadCdkContext } from '../../cdk/build';

type Json = Record<string, any>;
type AslValidator = (
  definition: unknown,
  options?: { checkPaths: boolean; checkArn: boolean },
) => { isValid: boolean; errorsText: (separator?: string) => string };
const aslValidator = createRequire(import.meta.url)('asl-validator') as AslValidator;

const ALLOWED_TYPES = new Set([
  'AWS::DynamoDB::Table',
  'AWS::SQS::Queue',
  'AWS::SQS::QueuePolicy',
  'AWS::IAM::Role',
  'AWS::IAM::Policy',
  'AWS::Lambda::Function',
  'AWS::Lambda::EventSourceMapping',
  'AWS::Lambda::Permission',
  'AWS::StepFunctions::StateMachine',
  'AWS::ApiGateway::RestApi',
  'AWS::ApiGateway::Resource',
  'AWS::ApiGateway::Method',
  'AWS::ApiGateway::Deployment',
  'AWS::ApiGateway::Stage',
  'AWS::ApiGateway::Account',
  'AWS::Logs::LogGroup',
  'AWS::CDK::Metadata',
  'AWS::Events::Rule',
  'AWS::ApiGateway::RequestValidator',
  'AWS::ApiGateway::Model',
  'AWS::ApiGateway::GatewayResponse',
  'AWS::CloudWatch::Alarm',
  'AWS::CloudWatch::Dashboard',
]);

const STATE_NAMES = [
  'Prepare', 'PrepareFailed', 'Decide', 'Decided', 'ReadDecision', 'RouteByStatus', 'UnknownStatus',
  'Commit', 'CommitBackoff', 'Abort', 'AbortBackoff', 'Finalize', 'Done',
];

const participants = loadCdkContext().participants as string[];
let data: Template;
let coordinator: Template;
let asl: Json;

/** The definition with every token replaced by a plain string, so it parses as JSON. */
function definitionOf(template: Template): Json {
  const machines = Object.values(template.findResources('AWS::StepFunctions::StateMachine'));
  expect(machines).toHaveLength(1);
  const definition = machines[0]!.Properties.DefinitionString as string | { 'Fn::Join': [string, unknown[]] };
  if (typeof definition === 'string') return JSON.parse(definition);
  const [separator, parts] = definition['Fn::Join'];
  const text = parts
    .map((part, i) =>
      typeof part === 'string' ? part : JSON.stringify(part) === '{"Ref":"AWS::Partition"}' ? 'aws' : `token-${i}`,
    )
    .join(separator);
  return JSON.parse(text);
}

function resourceTypes(template: Template): string[] {
  return Object.values(template.toJSON().Resources as Json).map((r) => r.Type as string);
}

beforeAll(() => {
  const app = buildApp({ bundle: false });
  data = Template.fromStack(app.data);
  coordinator = Template.fromStack(app.coordinator);
  asl = definitionOf(coordinator);
});

describe('data stack', () => {
  it('gives every queue that is not a DLQ a redrive policy', () => {
    const queues = data.findResources('AWS::SQS::Queue');
    const dlqIds = new Set(
      Object.values(queues)
        .map((q) => q.Properties.RedrivePolicy?.deadLetterTargetArn?.['Fn::GetAtt']?.[0] as string | undefined)
        .filter((id) => id !== undefined),
    );
    const sources = Object.entries(queues).filter(([id]) => !dlqIds.has(id));
    expect(sources).toHaveLength(participants.length + 1);
    expect(dlqIds.size).toBe(participants.length + 1);
    for (const [, queue] of sources) {
      expect(queue.Properties.RedrivePolicy.maxReceiveCount).toBe(5);
      expect(queue.Properties.VisibilityTimeout).toBe(60);
    }
    for (const queue of Object.values(queues)) {
      expect(queue.DeletionPolicy).toBe('Retain');
      expect(queue.Properties.SqsManagedSseEnabled).toBe(true);
    }
    for (const service of participants) {
      data.hasResourceProperties('AWS::SQS::Queue', { QueueName: `dtc-${service}-requests` });
    }
  });

  it('denies non-TLS access on every queue', () => {
    const policies = Object.values(data.findResources('AWS::SQS::QueuePolicy'));
    expect(policies).toHaveLength(Object.keys(data.findResources('AWS::SQS::Queue')).length);
    for (const policy of policies) {
      expect(policy.Properties.PolicyDocument.Statement).toContainEqual(
        expect.objectContaining({
          Effect: 'Deny',
          Action: 'sqs:*',
          Condition: { Bool: { 'aws:SecureTransport': 'false' } },
        }),
      );
    }
  });

  it('keeps the log table: PITR, TTL on expiresAt, both indexes, retained', () => {
    data.resourceCountIs('AWS::DynamoDB::Table', 2);
    data.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
        GlobalSecondaryIndexes: Match.arrayWith([
          Match.objectLike({
            IndexName: 'byCreated',
            KeySchema: [
              { AttributeName: 'listPk', KeyType: 'HASH' },
              { AttributeName: 'createdAt', KeyType: 'RANGE' },
            ],
            Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['txId', 'status', 'updatedAt', 'decision', 'decisionReason'] },
          }),
          Match.objectLike({
            IndexName: 'open',
            KeySchema: [
              { AttributeName: 'openPk', KeyType: 'HASH' },
              { AttributeName: 'updatedAt', KeyType: 'RANGE' },
            ],
            Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['txId', 'status', 'createdAt', 'prepareDeadlineAt'] },
          }),
        ]),
      }),
    });
  });
});

describe('lock table', () => {
  it('is keyed by resource, encrypted, with PITR, TTL for garbage only, retained, and two sparse indexes', () => {
    data.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        KeySchema: [{ AttributeName: 'resource', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
        SSESpecification: { SSEEnabled: true },
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
        GlobalSecondaryIndexes: [
          Match.objectLike({
            IndexName: 'waiting',
            KeySchema: [
              { AttributeName: 'waitPk', KeyType: 'HASH' },
              { AttributeName: 'resource', KeyType: 'RANGE' },
            ],
            Projection: { ProjectionType: 'ALL' },
          }),
          Match.objectLike({
            IndexName: 'deadlocks',
            KeySchema: [
              { AttributeName: 'deadlockPk', KeyType: 'HASH' },
              { AttributeName: 'createdAt', KeyType: 'RANGE' },
            ],
          }),
        ],
      }),
    });
  });

  it('gives every function LOCK_TABLE', () => {
    const fns = Object.values(coordinator.findResources('AWS::Lambda::Function'));
    for (const fn of fns) expect(fn.Properties.Environment.Variables.LOCK_TABLE).toEqual(expect.anything());
  });

  it('runs the recovery sweeper every minute (every 2 s on the local stack) with least privilege', () => {
    const rules = Object.values(coordinator.findResources('AWS::Events::Rule')).filter((r) => r.Properties.Description === 'DTC recovery sweeper');
    expect(rules).toHaveLength(1);
    expect(rules[0]!.Properties.ScheduleExpression).toBe('rate(1 minute)');
    expect(rules[0]!.Metadata['dtc:localRateSeconds']).toBe(2);
    const [sweeperId] = Object.entries(coordinator.findResources('AWS::Lambda::Function')).find(([, fn]) => fn.Metadata['dtc:entry'] === 'lambdas/sweeper.ts')!;
    expect(JSON.stringify(rules[0]!.Properties.Targets)).toContain(sweeperId);
    const role = (coordinator.toJSON().Resources as Json)[sweeperId].Properties.Role['Fn::GetAtt'][0] as string;
    const statements = Object.values(coordinator.findResources('AWS::IAM::Policy'))
      .filter((p) => JSON.stringify(p.Properties.Roles).includes(role))
      .flatMap((p) => p.Properties.PolicyDocument.Statement as Json[]);
    const actions = statements.flatMap((s) => [s.Action].flat()).filter((a: string) => !a.startsWith('logs:') && !a.startsWith('xray:'));
    expect(actions.sort()).toEqual(['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:UpdateItem', 'states:DescribeExecution', 'states:StartExecution'].sort());
    expect(JSON.stringify(statements)).toContain('/index/open');
  });

  it('runs the detector every minute (every second on the local stack) with least privilege', () => {
    const rules = Object.values(coordinator.findResources('AWS::Events::Rule')).filter((r) => r.Properties.Description === 'DTC deadlock detector');
    expect(rules).toHaveLength(1);
    expect(rules[0]!.Properties.ScheduleExpression).toBe('rate(1 minute)');
    expect(rules[0]!.Metadata['dtc:localRateSeconds']).toBe(1);
    const [detectorId] = Object.entries(coordinator.findResources('AWS::Lambda::Function')).find(([, fn]) => fn.Metadata['dtc:entry'] === 'lambdas/detector.ts')!;
    const role = (coordinator.toJSON().Resources as Json)[detectorId].Properties.Role['Fn::GetAtt'][0] as string;
    const statements = Object.values(coordinator.findResources('AWS::IAM::Policy'))
      .filter((p) => JSON.stringify(p.Properties.Roles).includes(role))
      .flatMap((p) => p.Properties.PolicyDocument.Statement as Json[]);
    const actions = statements.flatMap((s) => [s.Action].flat()).filter((a: string) => !a.startsWith('logs:') && !a.startsWith('xray:'));
    expect(actions.sort()).toEqual(
      ['dynamodb:GetItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:UpdateItem', 'states:SendTaskSuccess'].sort(),
    );
    expect(JSON.stringify(statements)).toContain('/index/waiting');
  });

  it('finalizes, and releases coordinator-held locks, in one last Lambda task that retries', () => {
    const finalize = asl.States.Finalize as Json;
    expect(finalize.End).toBe(true);
    expect(finalize.Resource).toMatch(/:states:::lambda:invoke$/);
    expect(finalize.Parameters.Payload).toEqual({ 'txId.$': '$.txId', phase: 'FINALIZE', 'result.$': '$.phaseTwo' });
    expect(finalize.ResultPath).toBeNull();
    expect(finalize.Retry.map((r: Json) => r.ErrorEquals).flat()).toEqual(expect.arrayContaining(['States.TaskFailed', 'States.Timeout', 'Lambda.ServiceException']));
    expect(finalize.Catch).toBeUndefined();
    // Waiting for a declared resource's lock is retried (before the generic task-failure retry).
    const retries = (asl.States.Prepare.Retry as Json[]).map((r) => r.ErrorEquals[0]);
    expect(retries.indexOf('LockWaitTimeoutError')).toBeGreaterThanOrEqual(0);
    expect(retries.indexOf('LockWaitTimeoutError')).toBeLessThan(retries.indexOf('States.TaskFailed'));
  });
});

describe('state machine', () => {
  it('is a Standard workflow', () => {
    coordinator.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineType: 'STANDARD' });
  });

  it('has the named states, and a timeout on every Task', () => {
    const states = asl.States as Record<string, Json>;
    expect(Object.keys(states).sort()).toEqual([...STATE_NAMES].sort());
    // Every execution starts in Prepare; a recovery execution is routed on by the decision in the log.
    expect(asl.StartAt).toBe('Prepare');
    expect(asl.States.ReadDecision.Next).toBe('RouteByStatus');
    expect(asl.States.RouteByStatus.Choices.map((c: Json) => c.Next)).toEqual(['Commit', 'Abort', 'Done', 'Decide']);
    const tasks = Object.entries(states).filter(([, s]) => s.Type === 'Task');
    expect(tasks.length).toBeGreaterThanOrEqual(6);
    for (const [name, task] of tasks) {
      expect({ name, timeout: task.TimeoutSeconds ?? task.TimeoutSecondsPath }).toEqual({ name, timeout: expect.anything() });
    }
    expect(states.Prepare!.TimeoutSecondsPath).toBe('$.timeouts.prepareSeconds');
    expect(states.Commit!.TimeoutSecondsPath).toBe('$.timeouts.commitSeconds');
    expect(states.Abort!.TimeoutSecondsPath).toBe('$.timeouts.commitSeconds');
  });

  it('makes the decision with a conditional write on PREPARING', () => {
    const decide = asl.States.Decide as Json;
    expect(decide.Resource).toMatch(/:states:::dynamodb:updateItem$/);
    // Its condition and update are the log table's (test/cdk/workflow-conditions.test.ts).
    expect(decide.Parameters.ConditionExpression).toContain('attribute_exists(#pk) AND #status = ');
    expect(decide.Catch.map((c: Json) => [c.ErrorEquals, c.Next])).toEqual([
      [['DynamoDB.ConditionalCheckFailedException'], 'ReadDecision'],
      [['States.ALL'], 'ReadDecision'],
    ]);
  });

  it('never lets phase two give up', () => {
    for (const name of ['Commit', 'Abort']) {
      const task = asl.States[name] as Json;
      expect(task.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: `${name}Backoff` }]);
      expect(asl.States[`${name}Backoff`]).toEqual({ Type: 'Wait', Seconds: 60, Next: name });
      // Timeouts and failed dispatches are re-sent with capped exponential backoff and full jitter.
      expect(task.Retry.map((r: Json) => [r.ErrorEquals, r.MaxDelaySeconds, r.JitterStrategy])).toEqual([
        [['States.Timeout'], 60, 'FULL'],
        [['States.TaskFailed'], 30, 'FULL'],
      ]);
    }
  });

  it('passes asl-validator', () => {
    const result = aslValidator(asl, { checkPaths: true, checkArn: true });
    expect(result.errorsText('\n')).toBe('');
    expect(result.isValid).toBe(true);
  });
});

describe('functions', () => {
  const functions = () => Object.values(coordinator.findResources('AWS::Lambda::Function'));

  it('run on nodejs22.x or newer and name their source for the local stack', () => {
    expect(functions()).toHaveLength(5);
    const entries = functions().map((fn) => {
      const major = Number(/^nodejs(\d+)\.x$/.exec(fn.Properties.Runtime)?.[1]);
      expect(major).toBeGreaterThanOrEqual(22);
      expect(fn.Properties.Architectures).toEqual(['arm64']);
      expect(fn.Metadata['dtc:handler']).toBe('handler');
      return fn.Metadata['dtc:entry'] as string;
    });
    expect(entries.sort()).toEqual(['lambdas/api.ts', 'lambdas/detector.ts', 'lambdas/dispatch.ts', 'lambdas/reply.ts', 'lambdas/sweeper.ts']);
  });

  it('share one environment, except STATE_MACHINE_ARN on api and sweeper only', () => {
    const envs = functions().map((fn) => ({ ...fn.Properties.Environment.Variables }) as Json);
    const withArn = functions().filter((fn) => fn.Properties.Environment.Variables.STATE_MACHINE_ARN !== undefined);
    expect(withArn.map((fn) => fn.Metadata['dtc:entry']).sort()).toEqual(['lambdas/api.ts', 'lambdas/sweeper.ts']);
    for (const env of envs) delete env.STATE_MACHINE_ARN;
    for (const env of envs.slice(1)) expect(env).toEqual(envs[0]);
    expect(Object.keys(envs[0]!)).toEqual(
      expect.arrayContaining(['TX_TABLE', 'REPLY_QUEUE_URL', 'PARTICIPANT_QUEUES', 'RETENTION_DAYS', 'POWERTOOLS_LOG_LEVEL']),
    );
  });

  it('consume the reply queue in batches that report item failures', () => {
    coordinator.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      BatchSize: 10,
      MaximumBatchingWindowInSeconds: 0,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  it('may complete task tokens of this state machine only', () => {
    coordinator.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: [
          {
            Action: 'states:SendTaskSuccess',
            Effect: 'Allow',
            Resource: { Ref: Match.stringLikeRegexp('StateMachine') },
          },
        ],
      },
    });
  });
});

describe('templates', () => {
  it('use only the resource types the embedded local stack provisions', () => {
    for (const template of [data, coordinator]) {
      expect(resourceTypes(template).filter((t) => !ALLOWED_TYPES.has(t))).toEqual([]);
    }
  });

  it('have no dependency cycle inside the coordinator stack', () => {
    const resources = coordinator.toJSON().Resources as Json;
    const refs = (node: unknown, out: Set<string>): Set<string> => {
      if (Array.isArray(node)) node.forEach((n) => refs(n, out));
      else if (node && typeof node === 'object') {
        for (const [key, value] of Object.entries(node)) {
          if (key === 'Ref' && typeof value === 'string' && value in resources) out.add(value);
          else if (key === 'Fn::GetAtt' && Array.isArray(value) && value[0] in resources) out.add(value[0]);
          else refs(value, out);
        }
      }
      return out;
    };
    const edges = new Map(
      Object.entries(resources).map(([id, r]) => [id, refs([r.Properties, [r.DependsOn ?? []].flat().map((d) => ({ Ref: d }))], new Set())]),
    );
    const done = new Set<string>();
    const visit = (id: string, path: string[]): void => {
      if (path.includes(id)) throw new Error(`cycle: ${[...path, id].join(' -> ')}`);
      if (done.has(id)) return;
      for (const next of edges.get(id) ?? []) visit(next, [...path, id]);
      done.add(id);
    };
    for (const id of edges.keys()) visit(id, []);
  });

  it('export the outputs clients and the local stack read', () => {
    const outputs = Object.keys(coordinator.toJSON().Outputs as Json);
    const perService = participants.map((s) => `${s.charAt(0).toUpperCase()}${s.slice(1)}QueueUrl`);
    expect(outputs.sort()).toEqual(['ApiUrl', 'ReplyQueueUrl', 'StateMachineArn', 'TxTableName', 'LockTableName', ...perService].sort());
  });

  it('route the API to the api function under stage v1, signed with IAM', () => {
    coordinator.hasResourceProperties('AWS::ApiGateway::RestApi', { Name: 'dtc-api' });
    coordinator.hasResourceProperties('AWS::ApiGateway::Stage', { StageName: 'v1' });
    const methods = Object.values(coordinator.findResources('AWS::ApiGateway::Method'));
    // transactions: POST, GET, GET {id}; locks/{resource}: POST, PUT, GET, DELETE; deadlocks: GET.
    expect(methods.map((m) => m.Properties.HttpMethod).sort()).toEqual(['DELETE', 'GET', 'GET', 'GET', 'GET', 'POST', 'POST', 'PUT']);
    for (const m of methods) {
      expect(m.Properties.AuthorizationType).toBe('AWS_IAM');
      expect(m.Properties.Integration.Type).toBe('AWS_PROXY');
    }
  });
});

describe('context validation', () => {
  const build = (overrides: Record<string, unknown>) => () => buildApp({ bundle: false, context: loadCdkContext(overrides) });

  it('rejects an empty participant list, showing it', () => {
    expect(build({ participants: [] })).toThrow(/'participants' must be a non-empty array.*got \[\]/);
  });

  it('rejects a bad participant name, showing it', () => {
    expect(build({ participants: ['inventory', 'Pay_ment'] })).toThrow(/invalid name "Pay_ment"/);
  });

  it('rejects a participant named twice', () => {
    expect(build({ participants: ['inventory', 'inventory'] })).toThrow(/names "inventory" twice/);
  });

  it('rejects a timeout that is not a positive integer, showing it', () => {
    expect(build({ defaultPrepareSeconds: 0 })).toThrow(/'defaultPrepareSeconds' must be a positive integer, got 0/);
    expect(build({ defaultCommitSeconds: 'thirty' })).toThrow(/'defaultCommitSeconds'.*got "thirty"/);
  });
});
