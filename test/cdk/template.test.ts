// Template tests: what the design depends on (DLQs, TLS, PITR, retain, a request and a reply queue per
// participant with the reply queue its alone, indexes with no constant key, the supervisor's shape,
// one shared environment, least privilege), not a snapshot of everything.
import { createRequire } from 'node:module';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp, loadCdkContext } from '../../cdk/build';
import { unsupportedResources } from '../../src/local/provision';
import type { CfnTemplate } from '../../src/local/template';
import { statementsOf } from './roles';

type Json = Record<string, any>;
type AslValidator = (
  definition: unknown,
  options?: { checkPaths: boolean; checkArn: boolean },
) => { isValid: boolean; errorsText: (separator?: string) => string };
const aslValidator = createRequire(import.meta.url)('asl-validator') as AslValidator;


const STATE_NAMES = ['Supervise', 'Route', 'Sleep', 'Backoff', 'Done', 'Malformed'];

const participants = loadCdkContext().participants as string[];
/** `participants` given as service -> the role ARN it runs as (another account for payment). */
const PRINCIPALS = { inventory: 'arn:aws:iam::111111111111:role/inventory-service', payment: 'arn:aws:iam::222222222222:role/payment-service' };
let data: Template;
let coordinator: Template;
/** The app built with PRINCIPALS. */
let principalData: Template;
let principalCoordinator: Template;
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

beforeAll(() => {
  const app = buildApp({ bundle: false });
  data = Template.fromStack(app.data);
  coordinator = Template.fromStack(app.coordinator);
  asl = definitionOf(coordinator);
  const withPrincipals = buildApp({ bundle: false, context: loadCdkContext({ participants: PRINCIPALS }) });
  principalData = Template.fromStack(withPrincipals.data);
  principalCoordinator = Template.fromStack(withPrincipals.coordinator);
});

const actionsOf = (statements: Json[]): string[] => statements.flatMap((s) => [s.Action].flat() as string[]).filter((a) => !a.startsWith('logs:') && !a.startsWith('xray:'));
/** The statements granting `action`, as JSON text (to look for the resources they name). */
const grantsOf = (statements: Json[], action: string): string => JSON.stringify(statements.filter((s) => [s.Action].flat().includes(action)));
/** A queue's logical id in the data stack by its QueueName. */
function queueId(template: Template, name: string): string {
  const found = Object.entries(template.findResources('AWS::SQS::Queue')).find(([, q]) => q.Properties.QueueName === name);
  if (!found) throw new Error(`no queue ${name}`);
  return found[0];
}
/** The statements of the resource policy of a queue (by QueueName). */
function queuePolicy(template: Template, name: string): Json[] {
  const id = queueId(template, name);
  const policies = Object.values(template.findResources('AWS::SQS::QueuePolicy')).filter((p) => (p.Properties.Queues as Json[]).some((q) => q.Ref === id));
  expect(policies).toHaveLength(1);
  return policies[0]!.Properties.PolicyDocument.Statement as Json[];
}

describe('data stack', () => {
  it('gives each participant a request queue and a reply queue, each with a redrive policy; one reply DLQ for all', () => {
    const queues = data.findResources('AWS::SQS::Queue');
    const dlqIds = new Set(
      Object.values(queues)
        .map((q) => q.Properties.RedrivePolicy?.deadLetterTargetArn?.['Fn::GetAtt']?.[0] as string | undefined)
        .filter((id) => id !== undefined),
    );
    const sources = Object.entries(queues).filter(([id]) => !dlqIds.has(id));
    expect(sources).toHaveLength(2 * participants.length);
    expect(dlqIds.size).toBe(participants.length + 1);
    for (const [, queue] of sources) {
      expect(queue.Properties.RedrivePolicy.maxReceiveCount).toBe(5);
      expect(queue.Properties.VisibilityTimeout).toBe(60);
    }
    for (const queue of Object.values(queues)) {
      expect(queue.DeletionPolicy).toBe('Retain');
      expect(queue.Properties.SqsManagedSseEnabled).toBe(true);
    }
    const replyDlq = queueId(data, 'dtc-replies-dlq');
    for (const service of participants) {
      const requests = queues[queueId(data, `dtc-${service}-requests`)]!;
      expect(requests.Properties.RedrivePolicy.deadLetterTargetArn['Fn::GetAtt'][0]).toBe(queueId(data, `dtc-${service}-requests-dlq`));
      const replies = queues[queueId(data, `dtc-${service}-replies`)]!;
      expect(replies.Properties.RedrivePolicy.deadLetterTargetArn['Fn::GetAtt'][0]).toBe(replyDlq);
    }
    expect(JSON.stringify(queues)).not.toContain('"dtc-replies"');
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

  it("with a principal per participant, lets only it send on its reply queue and receive from its request queue", () => {
    for (const [service, principal] of Object.entries(PRINCIPALS)) {
      const replies = queuePolicy(principalData, `dtc-${service}-replies`);
      const replyArn = { 'Fn::GetAtt': [queueId(principalData, `dtc-${service}-replies`), 'Arn'] };
      expect(replies).toContainEqual({
        Sid: 'OnlyTheParticipantSends',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: 'sqs:SendMessage',
        Resource: replyArn,
        Condition: { ArnNotEquals: { 'aws:PrincipalArn': principal } },
      });
      expect(replies).toContainEqual({ Effect: 'Allow', Principal: { AWS: principal }, Action: ['sqs:SendMessage', 'sqs:GetQueueUrl'], Resource: replyArn });
      const requests = queuePolicy(principalData, `dtc-${service}-requests`);
      expect(requests).toContainEqual({
        Effect: 'Allow',
        Principal: { AWS: principal },
        Action: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueUrl', 'sqs:GetQueueAttributes'],
        Resource: { 'Fn::GetAtt': [queueId(principalData, `dtc-${service}-requests`), 'Arn'] },
      });
      // Nothing else is granted to the participant, on any queue.
      const granted = Object.values(principalData.findResources('AWS::SQS::QueuePolicy'))
        .flatMap((p) => p.Properties.PolicyDocument.Statement as Json[])
        .filter((st) => st.Effect === 'Allow' && JSON.stringify(st.Principal).includes(principal));
      expect(granted).toHaveLength(2);
    }
    // Without principals, no queue policy names anyone: the participants' own accounts grant access.
    for (const policy of Object.values(data.findResources('AWS::SQS::QueuePolicy'))) {
      expect(policy.Properties.PolicyDocument.Statement).toHaveLength(1);
    }
  });

  it('gives participants nothing on the log table or Step Functions', () => {
    for (const template of [principalData, principalCoordinator]) {
      const json = JSON.stringify(template.toJSON());
      for (const principal of Object.values(PRINCIPALS)) {
        const mentioning = Object.values(template.toJSON().Resources as Json).filter((r) => JSON.stringify(r).includes(principal));
        // Queue policies grant it; the functions' environment names it (PARTICIPANT_PRINCIPALS: who may abort what).
        for (const r of mentioning) {
          if (r.Type === 'AWS::Lambda::Function') expect(JSON.stringify(r.Properties.Environment.Variables.PARTICIPANT_PRINCIPALS)).toContain(principal);
          else expect(r.Type).toBe('AWS::SQS::QueuePolicy');
        }
      }
      expect(json).not.toContain('states:SendTask');
    }
  });

  it('keeps the log table: PITR, TTL on expiresAt, two KEYS_ONLY indexes on keys that are not constant, retained', () => {
    data.resourceCountIs('AWS::DynamoDB::Table', 2);
    data.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
        AttributeDefinitions: Match.arrayWith([
          { AttributeName: 'lp', AttributeType: 'S' },
          { AttributeName: 'createdAt', AttributeType: 'S' },
          { AttributeName: 'og', AttributeType: 'S' },
          { AttributeName: 'prepareDeadlineAt', AttributeType: 'N' },
        ]),
        GlobalSecondaryIndexes: [
          {
            IndexName: 'byCreated',
            KeySchema: [
              { AttributeName: 'lp', KeyType: 'HASH' },
              { AttributeName: 'createdAt', KeyType: 'RANGE' },
            ],
            Projection: { ProjectionType: 'KEYS_ONLY' },
          },
          {
            IndexName: 'open',
            KeySchema: [
              { AttributeName: 'og', KeyType: 'HASH' },
              { AttributeName: 'prepareDeadlineAt', KeyType: 'RANGE' },
            ],
            Projection: { ProjectionType: 'KEYS_ONLY' },
          },
        ],
      }),
    });
    // Neither index is keyed by what a vote or an acknowledgement writes.
    const text = JSON.stringify(data.findResources('AWS::DynamoDB::Table'));
    for (const written of ['updatedAt', 'status', 'listPk', 'openPk']) expect(text).not.toContain(`"AttributeName":"${written}"`);
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
    const statements = statementsOf(coordinator, 'lambdas/sweeper.ts');
    // The open index (a scan of the groups), a group's generation record, and the supervisors.
    expect(actionsOf(statements).sort()).toEqual(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Scan', 'states:DescribeExecution', 'states:StartExecution'].sort());
    expect(grantsOf(statements, 'dynamodb:Scan')).toContain('/index/open');
  });

  it('runs the detector every minute (every second on the local stack) with least privilege: it sends the victim\'s ABORTs itself', () => {
    const rules = Object.values(coordinator.findResources('AWS::Events::Rule')).filter((r) => r.Properties.Description === 'DTC deadlock detector');
    expect(rules).toHaveLength(1);
    expect(rules[0]!.Properties.ScheduleExpression).toBe('rate(1 minute)');
    expect(rules[0]!.Metadata['dtc:localRateSeconds']).toBe(1);
    const statements = statementsOf(coordinator, 'lambdas/detector.ts');
    // UpdateItem on the lock table: a victim that needs no acknowledgement finishes at once and frees its locks.
    expect(actionsOf(statements).sort()).toEqual(['dynamodb:GetItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:UpdateItem', 'dynamodb:UpdateItem', 'events:PutEvents', 'sqs:SendMessage'].sort());
    expect(grantsOf(statements, 'dynamodb:Query')).toContain('/index/waiting');
    const send = grantsOf(statements, 'sqs:SendMessage');
    for (const service of participants) expect(send).toContain(`Queues${service}requests`);
    expect(send).not.toContain('dlq');
  });
});

describe("the groups' supervisor state machine", () => {
  it('is a Standard workflow', () => {
    coordinator.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineType: 'STANDARD', StateMachineName: 'dtc-supervisor' });
  });

  it('is Sleep (until $.wakeAt) -> Supervise -> Route -> Sleep, Backoff on errors, Done when the group is', () => {
    const states = asl.States as Record<string, Json>;
    expect(Object.keys(states).sort()).toEqual([...STATE_NAMES].sort());
    expect(asl.StartAt).toBe('Sleep');
    const supervise = states.Supervise!;
    expect(supervise).toMatchObject({ Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', OutputPath: '$.Payload', TimeoutSeconds: 60, Next: 'Route' });
    expect(supervise.Parameters['Payload.$']).toBe('$');
    // The function the Task invokes is a reference, rendered as a token here: it is the supervise function's.
    expect(supervise.Parameters.FunctionName).toMatch(/^token-\d+$/);
    const raw = JSON.stringify(Object.values(coordinator.findResources('AWS::StepFunctions::StateMachine'))[0]!.Properties.DefinitionString);
    expect(raw).toMatch(/"Fn::GetAtt":\["Functionssupervise[0-9A-F]{8}","Arn"\]/);
    expect(raw).not.toMatch(/Functions(api|reply)[0-9A-F]{8}/);
    expect(states.Route).toEqual({ Type: 'Choice', Choices: [{ Variable: '$.done', BooleanEquals: true, Next: 'Done' }], Default: 'Sleep' });
    expect(states.Sleep).toEqual({ Type: 'Wait', TimestampPath: '$.wakeAt', Next: 'Supervise' });
    expect(states.Done).toEqual({ Type: 'Succeed' });
    // A run that keeps failing is retried with jitter, then tried again after a pause, for ever.
    expect(supervise.Retry).toEqual([
      expect.objectContaining({ ErrorEquals: expect.arrayContaining(['States.TaskFailed', 'States.Timeout', 'Lambda.ServiceException']), JitterStrategy: 'FULL' }),
    ]);
    // ... except a state no run can read: no retry fixes that, so the execution ends (the sweeper starts the next generation).
    expect(supervise.Catch).toEqual([
      { ErrorEquals: ['SupervisorStateError'], Next: 'Malformed' },
      { ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Backoff' },
    ]);
    expect(states.Malformed).toMatchObject({ Type: 'Fail', Error: 'SupervisorStateError' });
    expect(states.Backoff).toEqual({ Type: 'Wait', Seconds: 30, Next: 'Supervise' });
  });

  it('has no callbacks and writes nothing itself: no task tokens, no DynamoDB or SQS tasks', () => {
    const text = JSON.stringify(asl);
    expect(text).not.toContain('waitForTaskToken');
    expect(text).not.toContain('$$.Task.Token');
    for (const [, state] of Object.entries(asl.States as Record<string, Json>)) {
      if (state.Type === 'Task') expect(state.Resource).toBe('arn:aws:states:::lambda:invoke');
    }
    const tasks = Object.values(asl.States as Record<string, Json>).filter((st) => st.Type === 'Task');
    expect(tasks).toHaveLength(1);
  });

  it('passes asl-validator', () => {
    const result = aslValidator(asl, { checkPaths: true, checkArn: true });
    expect(result.errorsText('\n')).toBe('');
    expect(result.isValid).toBe(true);
  });
});

describe('functions', () => {
  const functions = () => Object.values(coordinator.findResources('AWS::Lambda::Function'));
  const ENTRIES = ['lambdas/api.ts', 'lambdas/detector.ts', 'lambdas/reply.ts', 'lambdas/supervise.ts', 'lambdas/sweeper.ts', 'lambdas/waiter.ts'];

  it('run on nodejs22.x or newer and name their source for the local stack', () => {
    expect(functions()).toHaveLength(ENTRIES.length);
    const entries = functions().map((fn) => {
      const major = Number(/^nodejs(\d+)\.x$/.exec(fn.Properties.Runtime)?.[1]);
      expect(major).toBeGreaterThanOrEqual(22);
      expect(fn.Properties.Architectures).toEqual(['arm64']);
      expect(fn.Metadata['dtc:handler']).toBe('handler');
      return fn.Metadata['dtc:entry'] as string;
    });
    expect(entries.sort()).toEqual(ENTRIES);
  });

  it('share one environment, except STATE_MACHINE_ARN on those that start supervisors', () => {
    const envs = functions().map((fn) => ({ ...fn.Properties.Environment.Variables }) as Json);
    const withArn = functions().filter((fn) => fn.Properties.Environment.Variables.STATE_MACHINE_ARN !== undefined);
    expect(withArn.map((fn) => fn.Metadata['dtc:entry']).sort()).toEqual(['lambdas/api.ts', 'lambdas/reply.ts', 'lambdas/supervise.ts', 'lambdas/sweeper.ts']);
    for (const env of envs) delete env.STATE_MACHINE_ARN;
    for (const env of envs.slice(1)) expect(env).toEqual(envs[0]);
    const env = envs[0]!;
    expect(Object.keys(env)).toEqual(
      expect.arrayContaining(['TX_TABLE', 'LOCK_TABLE', 'PARTICIPANT_QUEUES', 'REPLY_QUEUE_ARNS', 'REPLY_DEAD_LETTER_QUEUE_URL', 'SUPERVISION_SHARDS', 'SUPERVISION_BUCKET_SECONDS', 'RETENTION_DAYS', 'POWERTOOLS_LOG_LEVEL']),
    );
    expect(env).not.toHaveProperty('REPLY_QUEUE_URL');
    expect({ shards: env.SUPERVISION_SHARDS, bucket: env.SUPERVISION_BUCKET_SECONDS }).toEqual({ shards: '8', bucket: '10' });
  });

  it('name each participant\'s reply queue ARN in REPLY_QUEUE_ARNS, the reply function\'s authority', () => {
    const value = JSON.stringify(functions()[0]!.Properties.Environment.Variables.REPLY_QUEUE_ARNS);
    for (const service of participants) {
      expect(value).toContain(`\\"${service}\\":\\"`);
      expect(value).toMatch(new RegExp(`ExportsOutputFnGetAttQueues${service}replies[0-9A-F]{8}Arn`));
    }
  });

  it('consume every reply queue, one event source mapping each, in batches that report item failures', () => {
    const mappings = Object.values(coordinator.findResources('AWS::Lambda::EventSourceMapping'));
    expect(mappings).toHaveLength(participants.length);
    for (const m of mappings) {
      expect(m.Properties).toMatchObject({ BatchSize: 10, MaximumBatchingWindowInSeconds: 0, FunctionResponseTypes: ['ReportBatchItemFailures'], FunctionName: { Ref: expect.stringMatching(/^Functionsreply/) } });
    }
    const sources = JSON.stringify(mappings.map((m) => m.Properties.EventSourceArn));
    for (const service of participants) expect(sources).toMatch(new RegExp(`Queues${service}replies[0-9A-F]{8}Arn`));
    expect(sources).not.toContain('requests');
  });

  it('let api, supervise and the sweeper start and describe supervisors of this state machine only; nobody completes task tokens', () => {
    for (const entry of ['lambdas/api.ts', 'lambdas/supervise.ts', 'lambdas/sweeper.ts']) {
      const statements = statementsOf(coordinator, entry);
      expect({ entry, start: grantsOf(statements, 'states:StartExecution') }).toEqual({ entry, start: expect.stringContaining(':stateMachine:dtc-supervisor') });
      expect({ entry, describe: grantsOf(statements, 'states:DescribeExecution') }).toEqual({ entry, describe: expect.stringContaining(':execution:dtc-supervisor:*') });
    }
    for (const entry of ['lambdas/detector.ts', 'lambdas/reply.ts']) expect(actionsOf(statementsOf(coordinator, entry)).filter((a) => a.startsWith('states:'))).toEqual([]);
    expect(JSON.stringify(coordinator.toJSON())).not.toMatch(/states:SendTask/);
  });
});

describe('templates', () => {
  it('use only the resource types the embedded local stack provisions or accepts', () => {
    expect(unsupportedResources([data, coordinator].map((t, i) => ({ stackName: ['data', 'coordinator'][i]!, template: t.toJSON() as CfnTemplate })))).toEqual([]);
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

  it('export the outputs clients and the local stack read, with each participant\'s reply queue', () => {
    const outputs = coordinator.toJSON().Outputs as Json;
    const perService = participants.map((s) => `${s.charAt(0).toUpperCase()}${s.slice(1)}QueueUrl`);
    expect(Object.keys(outputs).sort()).toEqual(['ApiUrl', 'EventBusName', 'ReplyQueueUrls', 'StateMachineArn', 'TxTableName', 'LockTableName', ...perService].sort());
    // ReplyQueueUrls is JSON, service -> URL, once CloudFormation substitutes the references.
    const [separator, parts] = outputs.ReplyQueueUrls.Value['Fn::Join'] as [string, unknown[]];
    const rendered = JSON.parse(parts.map((part, i) => (typeof part === 'string' ? part : `https://queue-${i}`)).join(separator)) as Record<string, string>;
    expect(Object.keys(rendered)).toEqual(participants);
    expect(JSON.stringify(outputs.ReplyQueueUrls)).toMatch(/Queuesinventoryreplies[0-9A-F]{8}QueueUrl|ExportsOutputRefQueuesinventoryreplies/);
  });

  it('route the API to the api function under stage v1, signed with IAM', () => {
    coordinator.hasResourceProperties('AWS::ApiGateway::RestApi', { Name: 'dtc-api' });
    coordinator.hasResourceProperties('AWS::ApiGateway::Stage', { StageName: 'v1' });
    const methods = Object.values(coordinator.findResources('AWS::ApiGateway::Method'));
    // transactions: POST, GET, GET {id}, GET {id}/decision, POST {id}/abort, POST {id}/release; locks/{resource}: POST, PUT, GET, DELETE; deadlocks: GET.
    expect(methods.map((m) => m.Properties.HttpMethod).sort()).toEqual(['DELETE', 'GET', 'GET', 'GET', 'GET', 'GET', 'POST', 'POST', 'POST', 'POST', 'PUT']);
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

  it('rejects a participant principal that is not an IAM role or user ARN, showing it', () => {
    expect(build({ participants: { inventory: 'inventory-role' } })).toThrow(/'participants.inventory' must be the ARN of the IAM role.*got "inventory-role"/);
  });

  it('rejects a timeout that is not a positive integer, showing it', () => {
    expect(build({ defaultPrepareSeconds: 0 })).toThrow(/'defaultPrepareSeconds' must be a positive integer, got 0/);
    expect(build({ defaultCommitSeconds: 'thirty' })).toThrow(/'defaultCommitSeconds'.*got "thirty"/);
  });
});
