// Template assertions for what `cdk deploy` must get right in production: two stacks with the
// stateful half retained, outputs, a protected API (IAM, validation, throttling, logs), least
// privilege per function, encryption and retention, Powertools settings, alarms and a dashboard.
import { Ajv } from 'ajv';
import { Template } from 'aws-cdk-lib/assertions';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { BAD_REQUEST_BODY_TEMPLATE, startTransactionModelSchema } from '../../cdk/api';
import { buildApp, loadCdkContext, readConfig } from '../../cdk/build';
import { ALARMS, API_THROTTLED_METRIC } from '../../cdk/observability';
import { startRequestSchema } from '../../src/core/transaction';
import { METRIC, METRICS_NAMESPACE } from '../../src/metrics';
import { functionRoles, roleStatements, statementsOf } from './roles';

type Json = Record<string, any>;

const context = loadCdkContext();
const participants = context.participants as string[];
const TOPIC_ARN = 'arn:aws:sns:eu-west-1:123456789012:oncall';
let data: Template;
let coordinator: Template;
/** The other settings at once (one synth, not three): no logging role, tracing off, an alarm topic. */
let variant: Template;

beforeAll(() => {
  const app = buildApp({ bundle: false });
  data = Template.fromStack(app.data);
  coordinator = Template.fromStack(app.coordinator);
  const other = buildApp({
    bundle: false,
    // As the CLI passes -c values: strings.
    context: loadCdkContext({ apiGatewayCloudWatchRole: 'false', tracing: 'false', alarmTopicArn: TOPIC_ARN }),
  });
  variant = Template.fromStack(other.coordinator);
});

const resources = (t: Template, type: string): [string, Json][] => Object.entries(t.findResources(type));
const pascal = (s: string) => s.split('-').map((p) => p.charAt(0).toUpperCase() + p.slice(1)).join('');

describe('cdk deploy: two stacks', () => {
  it('keeps every table and queue in the data stack, retained; the coordinator stack holds none', () => {
    for (const type of ['AWS::DynamoDB::Table', 'AWS::SQS::Queue']) {
      expect(resources(coordinator, type)).toEqual([]);
      const found = resources(data, type);
      expect(found.length).toBeGreaterThan(0);
      for (const [, r] of found) expect([r.DeletionPolicy, r.UpdateReplacePolicy]).toEqual(['Retain', 'Retain']);
    }
  });

  it('hands the stateful resources over through references, not names', () => {
    const json = JSON.stringify(coordinator.toJSON());
    expect(json).toContain('"Fn::ImportValue":"DtcData:');
  });

  it('outputs the API URL, each participant queue URL and the table names', () => {
    const outputs = coordinator.toJSON().Outputs as Json;
    // https://<api>.execute-api.<region>.<suffix>/<stage>/
    expect(outputs.ApiUrl.Value['Fn::Join'][1]).toEqual(
      expect.arrayContaining(['https://', '.execute-api.', { Ref: expect.stringMatching(/^ApiRestApiDeploymentStagev1/) }]),
    );
    for (const key of ['TxTableName', 'LockTableName', 'ReplyQueueUrls', 'StateMachineArn']) expect(outputs[key]).toBeDefined();
    expect(outputs.ReplyQueueUrl).toBeUndefined();
    for (const service of participants) expect(outputs[`${pascal(service)}QueueUrl`]).toBeDefined();
  });
});

describe('the API', () => {
  it('authorizes every method with IAM (SigV4) and validates every request', () => {
    const validators = resources(coordinator, 'AWS::ApiGateway::RequestValidator');
    expect(validators).toHaveLength(1);
    expect(validators[0]![1].Properties).toMatchObject({ ValidateRequestBody: true, ValidateRequestParameters: true });
    for (const [id, m] of resources(coordinator, 'AWS::ApiGateway::Method')) {
      expect({ id, auth: m.Properties.AuthorizationType }).toEqual({ id, auth: 'AWS_IAM' });
      expect({ id, validator: m.Properties.RequestValidatorId }).toEqual({ id, validator: { Ref: validators[0]![0] } });
    }
  });

  it('checks the POST /transactions body against the model generated from the zod schema', () => {
    const [[modelId, model]] = resources(coordinator, 'AWS::ApiGateway::Model') as [[string, Json]];
    expect(model.Properties).toMatchObject({ ContentType: 'application/json', Name: 'StartTransaction' });
    expect(model.Properties.Schema.$schema).toBe('http://json-schema.org/draft-04/schema#');
    coordinator.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'POST',
      RequestModels: { 'application/json': { Ref: modelId } },
    });
  });

  it('answers a body the gateway rejects in the API error envelope', () => {
    coordinator.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'BAD_REQUEST_BODY',
      StatusCode: '400',
      ResponseTemplates: { 'application/json': BAD_REQUEST_BODY_TEMPLATE },
    });
    // The envelope is JSON once API Gateway substitutes its (quoted) variables.
    const rendered = BAD_REQUEST_BODY_TEMPLATE.replace('$context.error.messageString', '"Invalid request body"').replace('$context.requestId', 'r-1');
    expect(JSON.parse(rendered)).toEqual({ error: { code: 'InvalidRequest', message: 'Invalid request body', requestId: 'r-1' } });
  });

  it('throttles the stage, and starts harder; logs errors and access, traces', () => {
    const [[, stage]] = resources(coordinator, 'AWS::ApiGateway::Stage') as [[string, Json]];
    const p = stage.Properties;
    expect(p.MethodSettings).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ ResourcePath: '/*', HttpMethod: '*', ThrottlingRateLimit: context.apiRateLimit, ThrottlingBurstLimit: context.apiBurstLimit, LoggingLevel: 'ERROR', DataTraceEnabled: false }),
        expect.objectContaining({ ResourcePath: '/~1transactions', HttpMethod: 'POST', ThrottlingRateLimit: context.startRateLimit, ThrottlingBurstLimit: context.startBurstLimit, LoggingLevel: 'ERROR' }),
      ]),
    );
    expect(context.startRateLimit as number).toBeLessThan(context.apiRateLimit as number);
    expect(p.TracingEnabled).toBe(true);
    expect(p.AccessLogSetting.DestinationArn).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/^ApiAccessLogs/), 'Arn'] });
    const format = JSON.parse(p.AccessLogSetting.Format) as Json;
    expect(format).toMatchObject({ requestId: '$context.requestId', userArn: '$context.identity.userArn', validationError: '$context.error.validationErrorString' });
  });

  it('sets up the account logging role only when asked', () => {
    coordinator.resourceCountIs('AWS::ApiGateway::Account', 1);
    variant.resourceCountIs('AWS::ApiGateway::Account', 0);
  });
});

describe('the request model agrees with the zod schema', () => {
  const ajv = new Ajv({ strict: false });
  // Draft 4 and draft 7 agree on every keyword the model uses; ajv speaks draft 7.
  const { $schema, ...schema } = JSON.parse(JSON.stringify(toRawSchema(startTransactionModelSchema()))) as Json;
  const gateway = ajv.compile(schema);
  const zod = startRequestSchema();

  it('uses only keywords whose meaning is the same in draft 4 and draft 7', () => {
    const keywords = new Set<string>();
    const walk = (node: Json) => {
      for (const [k, v] of Object.entries(node)) {
        keywords.add(k);
        if (k === 'properties') Object.values(v as Record<string, Json>).forEach(walk);
        if (k === 'items') walk(v as Json);
      }
    };
    walk(schema);
    const sameInBoth = ['additionalProperties', 'items', 'maxItems', 'maxLength', 'maximum', 'minItems', 'minLength', 'minimum', 'pattern', 'properties', 'required', 'type'];
    expect([...keywords].filter((k) => !sameInBoth.includes(k))).toEqual([]);
    expect(keywords.has('additionalProperties')).toBe(true);
    expect($schema).toBe('http://json-schema.org/draft-04/schema#');
  });

  it('accepts and rejects the same bodies', () => {
    // Mostly well-formed bodies with one thing at a time wrong, so both answers are common.
    const rarely = <T>(wrong: fc.Arbitrary<T>) => fc.oneof({ weight: 8, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: wrong });
    const name = fc.oneof(
      { weight: 15, arbitrary: fc.constantFrom('inventory', 'payment', 'a', 'x-1', 'a'.repeat(40)) },
      { weight: 1, arbitrary: fc.oneof(fc.constantFrom('Bad', '1abc', '', 'a'.repeat(41), 'pay_ment'), fc.string({ maxLength: 6 })) },
    );
    const seconds = fc.oneof(
      { weight: 15, arbitrary: fc.constantFrom(1, 10, 900, 3600) },
      { weight: 1, arbitrary: fc.oneof(fc.constantFrom(0, 901, 3601, -5, 1.5, '10', null), fc.integer({ min: -10, max: 4000 })) },
    );
    const participant = fc.record(
      { service: name, operation: fc.jsonValue({ maxDepth: 2 }), extra: rarely(fc.boolean()) },
      { requiredKeys: ['service'] },
    ).map(({ extra, ...p }) => (extra == null ? p : { ...p, extra }));
    const body = fc.oneof(
      {
        weight: 9,
        arbitrary: fc
          .record(
            {
              participants: fc.oneof(
                { weight: 12, arbitrary: fc.array(participant, { minLength: 1, maxLength: 3 }) },
                { weight: 1, arbitrary: fc.array(participant, { minLength: 0, maxLength: 27 }) },
                { weight: 1, arbitrary: fc.constantFrom('inventory', null, {}) },
              ),
              timeouts: fc.oneof(
                { weight: 9, arbitrary: fc.record({ prepareSeconds: seconds, commitSeconds: seconds, other: rarely(seconds) }, { requiredKeys: [] }) },
                { weight: 1, arbitrary: fc.constantFrom(null, 10, []) },
              ),
              stray: rarely(fc.constant(1)),
            },
            { requiredKeys: ['participants'] },
          )
          .map((b) => {
            const out: Json = { ...b };
            if (out.stray === null) delete out.stray;
            if (out.timeouts && typeof out.timeouts === 'object' && out.timeouts.other === null) delete out.timeouts.other;
            return out;
          }),
      },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    );
    let accepted = 0;
    let rejected = 0;
    fc.assert(
      fc.property(body, (b) => {
        const viaZod = zod.safeParse(b).success;
        expect({ body: b, gateway: gateway(b) }).toEqual({ body: b, gateway: viaZod });
        if (viaZod) accepted++;
        else rejected++;
      }),
      { numRuns: 3000, seed: 5 },
    );
    // The comparison means little unless both outcomes occur often.
    expect(Math.min(accepted, rejected)).toBeGreaterThan(300);
  });
});

/** CDK's JsonSchema (schema/ref) -> the JSON Schema document CloudFormation receives ($schema/$ref). */
function toRawSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toRawSchema);
  if (!node || typeof node !== 'object') return node;
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k === 'schema' ? '$schema' : k === 'ref' ? '$ref' : k, k === 'properties' ? Object.fromEntries(Object.entries(v as Json).map(([n, s]) => [n, toRawSchema(s)])) : toRawSchema(v)]));
}

describe('least privilege', () => {
  // What each function may do is derived from what its code calls: test/cdk/permissions.test.ts.

  it('gives each function its own role, with no AWS-managed policy', () => {
    const roles = functionRoles(coordinator);
    expect(new Set(roles.map((r) => r.role)).size).toBe(roles.length);
    for (const { role } of roles) {
      expect(coordinator.toJSON().Resources[role].Properties.ManagedPolicyArns).toBeUndefined();
    }
  });

  it('names a resource in every statement, except X-Ray, which has no resource-level permissions', () => {
    for (const { entry, role } of functionRoles(coordinator)) {
      for (const s of roleStatements(coordinator, role)) {
        for (const a of [s.Action].flat() as string[]) expect({ entry, action: a }).toEqual({ entry, action: expect.not.stringContaining('*') });
        if (s.Resource === '*') expect({ entry, actions: [s.Action].flat() }).toEqual({ entry, actions: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'] });
      }
    }
  });

  it('lets each function write only to its own log group', () => {
    for (const { entry, role } of functionRoles(coordinator)) {
      const logs = roleStatements(coordinator, role).filter((s) => [s.Action].flat().some((a: string) => a.startsWith('logs:')));
      expect(logs).toHaveLength(1);
      expect(logs[0]!.Resource).toEqual({ 'Fn::GetAtt': [expect.any(String), 'Arn'] });
      const group = coordinator.toJSON().Resources[logs[0]!.Resource['Fn::GetAtt'][0]];
      expect({ entry, type: group.Type }).toEqual({ entry, type: 'AWS::Logs::LogGroup' });
    }
  });

  it("lets supervise, and only supervise, put in-doubt copies in the participants' dead-letter queues; reply, and only reply, refused replies in the reply DLQ", () => {
    const sendTargets = (entry: string) => {
      return JSON.stringify(statementsOf(coordinator, entry).filter((s) => [s.Action].flat().includes('sqs:SendMessage')));
    };
    for (const service of participants) {
      expect(sendTargets('lambdas/supervise.ts')).toContain(`${service}requestsdlq`);
      for (const entry of ['lambdas/api.ts', 'lambdas/reply.ts', 'lambdas/detector.ts']) expect(sendTargets(entry)).not.toContain(`${service}requestsdlq`);
      // Nobody on the coordinator's side sends on a participant's reply queue.
      for (const { entry } of functionRoles(coordinator)) expect(sendTargets(entry)).not.toMatch(new RegExp(`Queues${service}replies[0-9A-F]{8}Arn`));
    }
    expect(sendTargets('lambdas/reply.ts')).toContain('Queuesrepliesdlq');
    for (const entry of ['lambdas/api.ts', 'lambdas/supervise.ts', 'lambdas/detector.ts']) expect(sendTargets(entry)).not.toContain('Queuesrepliesdlq');
  });

  it('lists the transactions through the one index it queries, and supervises through the other', () => {
    const queries = (entry: string) => {
      return JSON.stringify(statementsOf(coordinator, entry).filter((s) => [s.Action].flat().includes('dynamodb:Query')));
    };
    expect(queries('lambdas/api.ts')).toContain('/index/byCreated');
    expect(queries('lambdas/api.ts')).not.toContain('/index/open');
    expect(queries('lambdas/supervise.ts')).toContain('/index/open');
    expect(queries('lambdas/supervise.ts')).not.toContain('/index/byCreated');
    for (const { entry } of functionRoles(coordinator)) expect(queries(entry)).not.toContain('/index/*');
  });
});

describe('data at rest and logs', () => {
  it('encrypts every table and keeps point-in-time recovery on', () => {
    for (const [, t] of resources(data, 'AWS::DynamoDB::Table')) {
      expect(t.Properties.SSESpecification).toEqual({ SSEEnabled: true });
      expect(t.Properties.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
    }
  });

  it('encrypts every queue and refuses plain HTTP to it', () => {
    const queues = resources(data, 'AWS::SQS::Queue');
    for (const [, q] of queues) expect(q.Properties.SqsManagedSseEnabled).toBe(true);
    const denied = resources(data, 'AWS::SQS::QueuePolicy').flatMap(([, p]) =>
      (p.Properties.PolicyDocument.Statement as Json[]).filter((s) => s.Effect === 'Deny' && s.Condition?.Bool?.['aws:SecureTransport'] === 'false'),
    );
    expect(denied).toHaveLength(queues.length);
  });

  it('gives every log group a retention', () => {
    for (const t of [data, coordinator]) {
      for (const [id, g] of resources(t, 'AWS::Logs::LogGroup')) expect({ id, days: g.Properties.RetentionInDays }).toEqual({ id, days: expect.any(Number) });
    }
    const functionLogs = resources(coordinator, 'AWS::Logs::LogGroup').filter(([id]) => /logs[0-9A-F]{8}$/.test(id));
    expect(functionLogs.length).toBeGreaterThanOrEqual(3);
    for (const [, g] of functionLogs) expect(g.Properties.RetentionInDays).toBe(context.logRetentionDays);
  });
});

describe('Powertools and tracing', () => {
  it('points every function at the metrics namespace the alarms read, and traces it', () => {
    for (const [, fn] of resources(coordinator, 'AWS::Lambda::Function')) {
      expect(fn.Properties.Environment.Variables).toMatchObject({
        POWERTOOLS_SERVICE_NAME: 'dtc',
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        POWERTOOLS_TRACE_ENABLED: 'true',
        POWERTOOLS_TRACER_CAPTURE_RESPONSE: 'false',
      });
      expect(fn.Properties.TracingConfig).toEqual({ Mode: 'Active' });
    }
  });

  it('turns tracing off everywhere with -c tracing=false (as the CLI passes it: a string)', () => {
    for (const [, fn] of resources(variant, 'AWS::Lambda::Function')) {
      expect(fn.Properties.Environment.Variables.POWERTOOLS_TRACE_ENABLED).toBe('false');
      expect(fn.Properties.TracingConfig?.Mode).not.toBe('Active');
    }
    variant.hasResourceProperties('AWS::ApiGateway::Stage', { TracingEnabled: false });
  });
});

describe('alarms and dashboard', () => {
  const alarms = () => resources(coordinator, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties as Json);
  const named = (suffix: string) => {
    const found = alarms().filter((a) => a.AlarmName === `dtc-${suffix}`);
    expect(found, suffix).toHaveLength(1);
    return found[0]!;
  };

  it('fires on any message in any DLQ, one alarm per DLQ (the reply queues share one)', () => {
    const dlqIds = resources(data, 'AWS::SQS::Queue').filter(([, q]) => /-dlq$/.test(q.Properties.QueueName)).map(([id]) => id);
    expect(dlqIds).toHaveLength(participants.length + 1);
    const watched = alarms().filter((a) => a.MetricName === 'ApproximateNumberOfMessagesVisible');
    expect(watched).toHaveLength(dlqIds.length);
    expect(watched.map((a) => a.AlarmName).sort()).toEqual(['dtc-replies-dlq-not-empty', ...participants.map((p) => `dtc-${p}-requests-dlq-not-empty`)].sort());
    expect(named('replies-dlq-not-empty').AlarmDescription).toContain(participants.map((p) => `${p}-replies`).join(', '));
    for (const a of watched) {
      expect(a).toMatchObject({ Namespace: 'AWS/SQS', Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 1, TreatMissingData: 'notBreaching' });
    }
    // Cross-stack references name the exporting resource's logical id.
    for (const id of dlqIds) expect(JSON.stringify(watched)).toContain(`ExportsOutputFnGetAtt${id}QueueName`);
  });

  it('fires on transactions in doubt, on the metric the recovery sweeper emits', () => {
    expect(named('transactions-in-doubt')).toMatchObject({
      Namespace: METRICS_NAMESPACE,
      MetricName: METRIC.TransactionsInDoubt,
      Dimensions: [{ Name: 'service', Value: 'dtc' }],
      Statistic: 'Maximum',
      Period: 300,
      Threshold: 1,
      EvaluationPeriods: ALARMS.inDoubtPeriods,
    });
  });

  it('fires on an abort rate above the configured percentage, given enough decisions', () => {
    const a = named('abort-rate');
    expect(a.Threshold).toBe(context.abortRateAlarmPercent);
    const expression = a.Metrics.find((m: Json) => m.Expression)?.Expression as string;
    expect(expression).toBe(`IF((c + a) >= ${ALARMS.abortRateMinDecisions}, 100 * a / (c + a), 0)`);
    const names = a.Metrics.filter((m: Json) => m.MetricStat).map((m: Json) => [m.Id, m.MetricStat.Metric.MetricName, m.MetricStat.Period]);
    expect(names.sort()).toEqual([['a', METRIC.TransactionsAborted, 900], ['c', METRIC.TransactionsCommitted, 900]]);
  });

  it('fires on errors of every function in the stack', () => {
    const functions = resources(coordinator, 'AWS::Lambda::Function').map(([id]) => id);
    const watched = alarms()
      .filter((a) => a.MetricName === 'Errors' && a.Namespace === 'AWS/Lambda')
      .map((a) => a.Dimensions[0].Value.Ref as string);
    expect(watched.sort()).toEqual(functions.sort());
  });

  it('fires on failed or timed-out executions and on API 5XX', () => {
    const failed = named('executions-failed');
    expect(failed.Metrics.map((m: Json) => m.Expression ?? m.MetricStat.Metric.MetricName).sort()).toEqual(['ExecutionsFailed', 'ExecutionsTimedOut', 'failed + timedOut']);
    expect(named('api-5xx')).toMatchObject({ MetricName: '5XXError', Namespace: 'AWS/ApiGateway', Threshold: ALARMS.api5xxPer5Minutes });
  });

  it('notifies a topic of its own when none is configured (with an email subscription from context), on ALARM and OK', () => {
    const [[topicId, topic]] = resources(coordinator, 'AWS::SNS::Topic') as [[string, Json]];
    expect(topic.Properties.TopicName).toBe('dtc-alarms');
    for (const a of alarms()) {
      expect({ alarm: a.AlarmName, actions: a.AlarmActions }).toEqual({ alarm: a.AlarmName, actions: [{ Ref: topicId }] });
      expect({ alarm: a.AlarmName, ok: a.OKActions }).toEqual({ alarm: a.AlarmName, ok: [{ Ref: topicId }] });
    }
    // Publishing only over TLS.
    const policy = resources(coordinator, 'AWS::SNS::TopicPolicy').flatMap(([, p]) => p.Properties.PolicyDocument.Statement as Json[]);
    expect(policy).toContainEqual(expect.objectContaining({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }));
    expect(resources(coordinator, 'AWS::SNS::Subscription')).toEqual([]);
    const subscribed = Template.fromStack(buildApp({ bundle: false, context: loadCdkContext({ alarmEmail: 'oncall@example.com' }) }).coordinator);
    subscribed.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'oncall@example.com' });
  });

  it('notifies the configured topic instead, and creates none', () => {
    expect(resources(variant, 'AWS::SNS::Topic')).toEqual([]);
    const withTopic = resources(variant, 'AWS::CloudWatch::Alarm');
    expect(withTopic.length).toBe(alarms().length);
    for (const [, a] of withTopic) {
      expect(a.Properties.AlarmActions).toEqual([TOPIC_ARN]);
      expect(a.Properties.OKActions).toEqual([TOPIC_ARN]);
    }
  });

  it('fires on throttling: every function, the state machine, every table and index, the API (4XX rate, 429s)', () => {
    const functions = resources(coordinator, 'AWS::Lambda::Function').map(([id]) => id);
    const throttles = alarms().filter((a) => a.MetricName === 'Throttles' && a.Namespace === 'AWS/Lambda');
    expect(throttles.map((a) => a.Dimensions[0].Value.Ref as string).sort()).toEqual(functions.sort());
    for (const a of throttles) expect(a).toMatchObject({ Threshold: 1, Period: 300, Statistic: 'Sum', ComparisonOperator: 'GreaterThanOrEqualToThreshold' });
    expect(named('executions-throttled')).toMatchObject({ Namespace: 'AWS/States', MetricName: 'ExecutionThrottled', Threshold: 1 });

    const tables = resources(data, 'AWS::DynamoDB::Table');
    const throttledDimensions = alarms()
      .filter((a) => /-throttled$/.test(a.AlarmName) && a.Metrics)
      .map((a) => ({
        name: a.AlarmName as string,
        expression: a.Metrics.find((m: Json) => m.Expression)?.Expression,
        metrics: a.Metrics.filter((m: Json) => m.MetricStat).map((m: Json) => m.MetricStat.Metric.MetricName).sort(),
        dimensions: a.Metrics.find((m: Json) => m.MetricStat).MetricStat.Metric.Dimensions.map((d: Json) => d.Name),
      }));
    const indexes = tables.flatMap(([, t]) => (t.Properties.GlobalSecondaryIndexes as Json[]).map((i) => i.IndexName as string));
    expect(indexes.sort()).toEqual(['byCreated', 'deadlocks', 'open', 'waiting']);
    expect(throttledDimensions.map((a) => a.name).sort()).toEqual(
      ['dtc-log-table-throttled', 'dtc-log-byCreated-index-throttled', 'dtc-log-open-index-throttled', 'dtc-locks-table-throttled', 'dtc-locks-waiting-index-throttled', 'dtc-locks-deadlocks-index-throttled'].sort(),
    );
    for (const a of throttledDimensions) {
      expect(a).toMatchObject({ expression: 'r + w', metrics: ['ReadThrottleEvents', 'WriteThrottleEvents'] });
      expect(a.dimensions).toEqual(a.name.endsWith('-index-throttled') ? ['GlobalSecondaryIndexName', 'TableName'] : ['TableName']);
    }

    const rate = named('api-4xx-rate');
    expect(rate.Metrics.find((m: Json) => m.Expression).Expression).toBe(`IF(n >= ${ALARMS.api4xxMinRequests}, 100 * e / n, 0)`);
    expect(rate.Threshold).toBe(ALARMS.api4xxPercent);
    expect(named('api-429')).toMatchObject({ Namespace: METRICS_NAMESPACE, MetricName: API_THROTTLED_METRIC, Threshold: ALARMS.api429Per5Minutes, Dimensions: [{ Name: 'apiId', Value: { Ref: expect.stringMatching(/^ApiRestApi/) } }] });
    // The metric comes from the access log, which carries the status and the API's id.
    const [[, filter]] = resources(coordinator, 'AWS::Logs::MetricFilter') as [[string, Json]];
    expect(filter.Properties).toMatchObject({
      FilterPattern: '{ $.status = "429" }',
      MetricTransformations: [{ MetricNamespace: METRICS_NAMESPACE, MetricName: API_THROTTLED_METRIC, MetricValue: '1', Dimensions: [{ Key: 'apiId', Value: '$.apiId' }] }],
    });
    expect(filter.Properties.LogGroupName.Ref).toMatch(/^ApiAccessLogs/);
    const stage = resources(coordinator, 'AWS::ApiGateway::Stage')[0]![1];
    expect(JSON.parse(stage.Properties.AccessLogSetting.Format)).toMatchObject({ status: '$context.status', apiId: '$context.apiId' });
  });

  it('fires when the sweeper stops reporting (missing data breaches), on participants in doubt and on unpublished decision events', () => {
    expect(named('sweeper-not-running')).toMatchObject({
      Namespace: METRICS_NAMESPACE,
      MetricName: METRIC.TransactionsInDoubt,
      Statistic: 'SampleCount',
      Period: 300,
      Threshold: 1,
      ComparisonOperator: 'LessThanThreshold',
      EvaluationPeriods: ALARMS.sweeperSilentPeriods,
      TreatMissingData: 'breaching',
    });
    // Every other alarm: an idle coordinator is a healthy one.
    for (const a of alarms().filter((x) => x.AlarmName !== 'dtc-sweeper-not-running')) expect({ alarm: a.AlarmName, missing: a.TreatMissingData }).toEqual({ alarm: a.AlarmName, missing: 'notBreaching' });
    expect(named('participants-in-doubt')).toMatchObject({ MetricName: METRIC.ParticipantsInDoubt, Statistic: 'Sum', Threshold: 1, Period: 300 });
    expect(named('decision-events-failed')).toMatchObject({ MetricName: METRIC.DecisionEventsFailed, Statistic: 'Sum', Threshold: 1 });
  });

  it('has a dashboard that shows every alarm and the coordinator metrics', () => {
    const [[, dashboard]] = resources(coordinator, 'AWS::CloudWatch::Dashboard') as [[string, Json]];
    expect(dashboard.Properties.DashboardName).toBe('dtc-coordinator');
    const body = JSON.stringify(dashboard.Properties.DashboardBody);
    for (const name of Object.values(METRIC)) expect(body).toContain(name);
    expect(body).toContain('"type\\":\\"alarm\\"');
  });
});

describe('context from the CLI', () => {
  const config = (overrides: Record<string, unknown>) => readConfig((key) => loadCdkContext(overrides)[key]);

  it('reads -c values, which arrive as strings', () => {
    expect(config({ participants: 'a,b-c' }).participants).toEqual(['a', 'b-c']);
    expect(config({ participants: '["a","b"]' }).participants).toEqual(['a', 'b']);
    expect(config({ defaultPrepareSeconds: '20', tracing: 'false', logRetentionDays: '90' })).toMatchObject({
      defaultPrepareSeconds: 20,
      tracing: false,
      logRetentionDays: 90,
    });
  });

  it('rejects what CloudWatch or SNS would, showing it', () => {
    expect(() => config({ logRetentionDays: 31 })).toThrow(/'logRetentionDays' must be one of .*got 31/);
    expect(() => config({ abortRateAlarmPercent: 0 })).toThrow(/'abortRateAlarmPercent'.*got 0/);
    expect(() => config({ alarmTopicArn: 'oncall' })).toThrow(/'alarmTopicArn' must be an SNS topic ARN, got "oncall"/);
    expect(() => config({ tracing: 'yes' })).toThrow(/'tracing' must be true or false, got "yes"/);
  });
});


describe('protection and limits', () => {
  const functionsByEntry = (t: Template) => Object.fromEntries(resources(t, 'AWS::Lambda::Function').map(([id, fn]) => [fn.Metadata['dtc:entry'] as string, { id, fn }]));

  it('protects every table from deletion, besides RETAIN', () => {
    for (const [, t] of resources(data, 'AWS::DynamoDB::Table')) expect(t.Properties.DeletionProtectionEnabled).toBe(true);
  });

  it('reserves concurrency: 1 for the scheduled functions, a budget for reply, supervise and waits; none for api', () => {
    const fns = functionsByEntry(coordinator);
    const reserved = Object.fromEntries(Object.entries(fns).map(([entry, { fn }]) => [entry, fn.Properties.ReservedConcurrentExecutions]));
    expect(reserved).toEqual({
      'lambdas/api.ts': undefined,
      'lambdas/reply.ts': 200,
      'lambdas/supervise.ts': 20,
      'lambdas/waiter.ts': context.waitConcurrency,
      'lambdas/sweeper.ts': 1,
      'lambdas/detector.ts': 1,
    });
    const none = functionsByEntry(Template.fromStack(buildApp({ bundle: false, context: loadCdkContext({ reservedConcurrency: 'false' }) }).coordinator));
    for (const { fn } of Object.values(none)) expect(fn.Properties.ReservedConcurrentExecutions).toBeUndefined();
  });

  it('caps every event source mapping so that together they fit in the reply function\'s reserved concurrency', () => {
    const mappings = resources(coordinator, 'AWS::Lambda::EventSourceMapping');
    expect(mappings).toHaveLength(participants.length);
    const caps = mappings.map(([, m]) => m.Properties.ScalingConfig?.MaximumConcurrency as number);
    for (const cap of caps) expect(cap).toBe(Math.floor(200 / participants.length));
    expect(caps.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(functionsByEntry(coordinator)['lambdas/reply.ts']!.fn.Properties.ReservedConcurrentExecutions);
    expect(() => buildApp({ bundle: false, context: loadCdkContext({ replyConcurrency: 7 }) })).toThrow(/'replyConcurrency' must be at least 2 per participant \(8\), got 7/);
  });

  it('gives the scheduled functions no asynchronous retries (a failed run is covered by the next), and only them', () => {
    const fns = functionsByEntry(coordinator);
    const configs = resources(coordinator, 'AWS::Lambda::EventInvokeConfig').map(([, c]) => c.Properties);
    expect(configs.map((c) => [Object.keys(fns).find((e) => fns[e]!.id === c.FunctionName.Ref), c.MaximumRetryAttempts]).sort()).toEqual([
      ['lambdas/detector.ts', 0],
      ['lambdas/sweeper.ts', 0],
    ]);
  });

  it('logs the state machine under /aws/vendedlogs/states/ with the context\'s retention, and traces it as the context says', () => {
    const [[, machine]] = resources(coordinator, 'AWS::StepFunctions::StateMachine') as [[string, Json]];
    const groupId = machine.Properties.LoggingConfiguration.Destinations[0].CloudWatchLogsLogGroup.LogGroupArn['Fn::GetAtt'][0] as string;
    expect(coordinator.toJSON().Resources[groupId].Properties).toMatchObject({ LogGroupName: '/aws/vendedlogs/states/dtc-supervisor', RetentionInDays: context.logRetentionDays });
    expect(machine.Properties.TracingConfiguration).toEqual({ Enabled: true });
    const [[, off]] = resources(variant, 'AWS::StepFunctions::StateMachine') as [[string, Json]];
    expect(off.Properties.TracingConfiguration).toEqual({ Enabled: false });
    const longer = Template.fromStack(buildApp({ bundle: false, context: loadCdkContext({ logRetentionDays: 365 }) }).coordinator);
    for (const [, g] of resources(longer, 'AWS::Logs::LogGroup')) expect(g.Properties.RetentionInDays).toBe(365);
  });

  it('fits two environments in one account-region: another prefix renames the stacks and every named resource', () => {
    const physicalNames = (app: ReturnType<typeof buildApp>) => {
      const names = [app.data.stackName, app.coordinator.stackName];
      for (const stack of [app.data, app.coordinator]) {
        const template = Template.fromStack(stack).toJSON().Resources as Json;
        for (const r of Object.values(template)) {
          const p = (r as Json).Properties ?? {};
          for (const key of ['QueueName', 'TableName', 'FunctionName', 'StateMachineName', 'Name', 'AlarmName', 'DashboardName', 'TopicName', 'LogGroupName', 'RoleName']) {
            // A model's or a validator's name is its API's own, not the account-region's.
            if (typeof p[key] === 'string' && !['AWS::ApiGateway::Model', 'AWS::ApiGateway::RequestValidator'].includes((r as Json).Type)) names.push(`${(r as Json).Type}:${p[key] as string}`);
          }
        }
      }
      return names;
    };
    const dtc = physicalNames(buildApp({ bundle: false }));
    const staging = physicalNames(buildApp({ bundle: false, context: loadCdkContext({ prefix: 'dtc-staging' }) }));
    expect(dtc).toEqual(expect.arrayContaining(['DtcData', 'DtcCoordinator', 'AWS::ApiGateway::RestApi:dtc-api', 'AWS::Events::EventBus:dtc-events']));
    expect(staging).toEqual(expect.arrayContaining(['DtcStagingData', 'DtcStagingCoordinator', 'AWS::ApiGateway::RestApi:dtc-staging-api', 'AWS::Events::EventBus:dtc-staging-events']));
    // Names the templates choose (not those CloudFormation generates) must all differ between them.
    expect(dtc.filter((n) => staging.includes(n))).toEqual([]);
    expect(dtc.length).toBeGreaterThan(30);
  });
});

describe('decision events', () => {
  const deciders = ['lambdas/api.ts', 'lambdas/detector.ts', 'lambdas/reply.ts', 'lambdas/supervise.ts'];
  const putEventsGrants = (t: Template) =>
    resources(t, 'AWS::Lambda::Function').flatMap(([, fn]) => {
      const role = fn.Properties.Role['Fn::GetAtt'][0] as string;
      const statements = resources(t, 'AWS::IAM::Policy')
        .filter(([, p]) => (p.Properties.Roles as Json[]).some((r) => r.Ref === role))
        .flatMap(([, p]) => p.Properties.PolicyDocument.Statement as Json[])
        .filter((s) => [s.Action].flat().includes('events:PutEvents'));
      return statements.map((s) => ({ entry: fn.Metadata['dtc:entry'] as string, resource: JSON.stringify(s.Resource) }));
    });

  it('go to a bus of the environment\'s own in the data stack, retained; exactly the functions that decide may put events on it', () => {
    const [[busId, bus]] = resources(data, 'AWS::Events::EventBus') as [[string, Json]];
    expect(bus).toMatchObject({ Properties: { Name: 'dtc-events' }, DeletionPolicy: 'Retain' });
    const grants = putEventsGrants(coordinator);
    expect(grants.map((g) => g.entry).sort()).toEqual(deciders);
    for (const g of grants) expect(g.resource).toContain(`ExportsOutputFnGetAtt${busId}Arn`);
    for (const [, fn] of resources(coordinator, 'AWS::Lambda::Function')) expect(JSON.stringify(fn.Properties.Environment.Variables.DECISION_EVENT_BUS)).toContain(`ExportsOutputRef${busId}`);
    expect((coordinator.toJSON().Outputs as Json).EventBusName).toBeDefined();
  });

  it('go to the account\'s default bus with eventBus=default; none with decisionEvents=false', () => {
    const onDefault = buildApp({ bundle: false, context: loadCdkContext({ eventBus: 'default' }) });
    expect(resources(Template.fromStack(onDefault.data), 'AWS::Events::EventBus')).toEqual([]);
    const grants = putEventsGrants(Template.fromStack(onDefault.coordinator));
    expect(grants.map((g) => g.entry).sort()).toEqual(deciders);
    for (const g of grants) expect(g.resource).toContain(':event-bus/default');
    for (const [, fn] of resources(Template.fromStack(onDefault.coordinator), 'AWS::Lambda::Function')) expect(fn.Properties.Environment.Variables.DECISION_EVENT_BUS).toBe('default');

    const off = buildApp({ bundle: false, context: loadCdkContext({ decisionEvents: 'false' }) });
    const offCoordinator = Template.fromStack(off.coordinator);
    expect(resources(Template.fromStack(off.data), 'AWS::Events::EventBus')).toEqual([]);
    expect(putEventsGrants(offCoordinator)).toEqual([]);
    for (const [, fn] of resources(offCoordinator, 'AWS::Lambda::Function')) expect(fn.Properties.Environment.Variables.DECISION_EVENT_BUS).toBeUndefined();
    expect(resources(offCoordinator, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties.AlarmName)).not.toContain('dtc-decision-events-failed');
    expect(() => buildApp({ bundle: false, context: loadCdkContext({ eventBus: 'aws.partner/x' }) })).toThrow(/'eventBus' must be "default" or an event bus name/);
  });

  it('publish Transaction Finished only with finishEvents=true (FINISH_EVENTS on every function that decides), never with decision events off', () => {
    for (const [, fn] of resources(coordinator, 'AWS::Lambda::Function')) expect(fn.Properties.Environment.Variables.FINISH_EVENTS).toBeUndefined();
    const on = Template.fromStack(buildApp({ bundle: false, context: loadCdkContext({ finishEvents: 'true' }) }).coordinator);
    const withFinish = resources(on, 'AWS::Lambda::Function').filter(([, fn]) => fn.Properties.Environment.Variables.FINISH_EVENTS === 'true').map(([, fn]) => fn.Metadata['dtc:entry'] as string);
    expect(withFinish).toEqual(expect.arrayContaining(deciders));
    expect(() => buildApp({ bundle: false, context: loadCdkContext({ finishEvents: 'true', decisionEvents: 'false' }) })).toThrow(/'finishEvents' is true but 'decisionEvents' is false/);
  });
});
