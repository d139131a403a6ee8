// Provision the synthesized CDK templates onto the embedded emulators, so the local stack runs
// exactly what `cdk deploy` would create. A resource the emulators cannot run stops the start,
// naming the resource: nothing is silently skipped that would change behaviour.
import { DescribeTimeToLiveCommand, DynamoDBClient, ResourceInUseException, UpdateTimeToLiveCommand, type CreateTableCommandInput } from '@aws-sdk/client-dynamodb';
import { createTableAndWait } from '../aws/tables';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { LocalApiGateway } from './apigateway';
import type { LocalLambda } from './lambda';
import { dependencyOrder, referencedIds, Resolver, type CfnResource, type CfnTemplate } from './template';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';

export interface StackTemplate {
  stackName: string;
  template: CfnTemplate;
}

export interface ProvisionTargets {
  region: string;
  accountId: string;
  dynamodb: DynamoDBClient;
  sqs: SQSClient;
  lambda: LocalLambda;
  api: LocalApiGateway;
  createStateMachine(name: string, definition: string): string;
}

export interface ProvisionResult {
  /** Stack name -> output key -> value. */
  outputs: Record<string, Record<string, string>>;
  /** The merged Lambda environment, already applied to process.env. */
  environment: Record<string, string>;
  tables: string[];
  queues: Record<string, string>;
  stateMachines: string[];
  /** Event source mappings and schedules to start once the handlers are loaded. */
  startMappings(): void;
}

/**
 * The period of a schedule on the embedded stack: the rule's `dtc:localRateSeconds` metadata if
 * set (EventBridge's 1-minute floor is too slow for a laptop demo or a test), else its rate().
 */
export function localPeriodSeconds(res: CfnResource): number {
  const override = Number(res.Metadata?.['dtc:localRateSeconds']);
  if (Number.isFinite(override) && override > 0) return override;
  const expr = String(res.Properties?.ScheduleExpression ?? '');
  const m = /^rate\((\d+) (second|minute|minutes|hour|hours|day|days)\)$/.exec(expr);
  if (!m) throw new Error(`schedule '${expr}' is not a rate() the embedded stack understands; set dtc:localRateSeconds metadata`);
  const unit = { second: 1, minute: 60, minutes: 60, hour: 3600, hours: 3600, day: 86_400, days: 86_400 }[m[2] as 'second'];
  return Number(m[1]) * unit;
}

/** Resource types that exist for AWS only (permissions, logs, metadata): accepted, not emulated. */
const ACCEPTED_NOT_EMULATED = new Set([
  'AWS::CDK::Metadata',
  'AWS::IAM::Role',
  'AWS::IAM::Policy',
  'AWS::SQS::QueuePolicy',
  'AWS::Lambda::Permission',
  'AWS::Logs::LogGroup',
  'AWS::ApiGateway::Account',
  'AWS::ApiGateway::Deployment',
  // Request validation: the api function validates every body with the same (zod) schema.
  'AWS::ApiGateway::RequestValidator',
  'AWS::ApiGateway::Model',
  'AWS::ApiGateway::GatewayResponse',
  // Observability: nothing here collects metrics.
  'AWS::CloudWatch::Alarm',
  'AWS::CloudWatch::Dashboard',
]);

const EMULATED = new Set([
  'AWS::DynamoDB::Table',
  'AWS::SQS::Queue',
  'AWS::Lambda::Function',
  'AWS::Lambda::EventSourceMapping',
  'AWS::StepFunctions::StateMachine',
  'AWS::ApiGateway::RestApi',
  'AWS::ApiGateway::Resource',
  'AWS::ApiGateway::Method',
  'AWS::ApiGateway::Stage',
  'AWS::Events::Rule',
]);

/** Every resource the embedded stack cannot run, as messages naming it. Empty means runnable. */
export function unsupportedResources(stacks: StackTemplate[]): string[] {
  const problems: string[] = [];
  for (const { stackName, template } of stacks) {
    for (const [id, res] of Object.entries(template.Resources ?? {})) {
      if (!EMULATED.has(res.Type) && !ACCEPTED_NOT_EMULATED.has(res.Type)) {
        problems.push(`${stackName}/${id}: resource type ${res.Type} is not supported by the embedded stack`);
      } else if (res.Type === 'AWS::Lambda::Function' && typeof res.Metadata?.['dtc:entry'] !== 'string') {
        problems.push(`${stackName}/${id}: Lambda function without 'dtc:entry' metadata; the embedded stack cannot find its code`);
      } else if (res.Type === 'AWS::ApiGateway::Method') {
        const type = (res.Properties?.Integration as { Type?: string } | undefined)?.Type;
        if (type !== 'AWS_PROXY' && type !== 'MOCK') {
          problems.push(`${stackName}/${id}: API integration type ${String(type)} is not supported (only Lambda proxy and MOCK)`);
        }
      } else if (res.Type === 'AWS::Events::Rule') {
        const p = res.Properties ?? {};
        if (typeof p.ScheduleExpression !== 'string') problems.push(`${stackName}/${id}: only scheduled EventBridge rules are supported`);
        // Each target's Arn must name a Lambda function of this template (GetAtt/Ref) or a function ARN.
        const targets = (p.Targets as { Arn?: unknown }[] | undefined) ?? [];
        const isFunction = (arn: unknown): boolean =>
          (typeof arn === 'string' && /:lambda:.*:function:/.test(arn)) ||
          [...referencedIds(arn)].some((ref) => template.Resources?.[ref]?.Type === 'AWS::Lambda::Function');
        if (targets.length === 0 || !targets.every((t) => isFunction(t.Arn))) problems.push(`${stackName}/${id}: only Lambda targets are supported`);
      } else if (res.Type === 'AWS::Lambda::EventSourceMapping') {
        const source = JSON.stringify(res.Properties?.EventSourceArn ?? '');
        if (!/Queue|sqs/i.test(source)) problems.push(`${stackName}/${id}: only SQS event sources are supported`);
      }
    }
  }
  return problems;
}

export async function provision(stacks: StackTemplate[], t: ProvisionTargets): Promise<ProvisionResult> {
  const problems = unsupportedResources(stacks);
  if (problems.length > 0) throw new Error(`the embedded stack cannot run this app:\n  ${problems.join('\n  ')}`);

  const exports = new Map<string, string>();
  const outputs: Record<string, Record<string, string>> = {};
  const environment: Record<string, string> = {};
  const envOwner: Record<string, string> = {};
  const tables: string[] = [];
  const queues: Record<string, string> = {};
  const queueUrlByArn = new Map<string, string>();
  const stateMachines: string[] = [];
  const mappings: (() => void)[] = [];

  for (const { stackName, template } of stacks) {
    const resources = template.Resources ?? {};
    const r = new Resolver({ region: t.region, accountId: t.accountId, stackName }, exports);
    const apiPaths = new Map<string, string>();
    const arn = (service: string, rest: string) => `arn:aws:${service}:${t.region}:${t.accountId}:${rest}`;
    const props = (res: CfnResource) => (r.resolve(res.Properties ?? {}) as Record<string, unknown>);
    const physicalName = (id: string, given: unknown) => (typeof given === 'string' && given ? given : `${stackName}-${id}`);

    for (const id of dependencyOrder(resources)) {
      const res = resources[id]!;
      switch (res.Type) {
        case 'AWS::DynamoDB::Table': {
          const p = props(res);
          const name = physicalName(id, p.TableName);
          await createTable(t.dynamodb, name, p);
          tables.push(name);
          r.set(id, { ref: name, attributes: { Arn: arn('dynamodb', `table/${name}`) } });
          break;
        }
        case 'AWS::SQS::Queue': {
          const p = props(res);
          const name = physicalName(id, p.QueueName);
          const { url, arn: queueArn } = await createQueue(t.sqs, name, p);
          queues[name] = url;
          queueUrlByArn.set(queueArn, url);
          r.set(id, { ref: url, attributes: { Arn: queueArn, QueueName: name, QueueUrl: url } });
          break;
        }
        case 'AWS::Lambda::Function': {
          const p = props(res);
          const name = physicalName(id, p.FunctionName);
          const fnArn = arn('lambda', `function:${name}`);
          const vars = ((p.Environment as { Variables?: Record<string, string> } | undefined)?.Variables ?? {}) as Record<string, string>;
          for (const [k, v] of Object.entries(vars)) {
            if (k in environment && environment[k] !== String(v)) {
              throw new Error(`functions ${envOwner[k]} and ${name} set ${k} differently; the embedded stack runs all handlers in one process`);
            }
            environment[k] = String(v);
            envOwner[k] = name;
          }
          t.lambda.register({
            name,
            arn: fnArn,
            entry: res.Metadata!['dtc:entry'] as string,
            timeoutSeconds: Number(p.Timeout ?? 3),
            memoryMb: Number(p.MemorySize ?? 128),
          });
          r.set(id, { ref: name, attributes: { Arn: fnArn } });
          break;
        }
        case 'AWS::Lambda::EventSourceMapping': {
          const p = props(res);
          const queueArn = String(p.EventSourceArn);
          const queueUrl = queueUrlByArn.get(queueArn);
          if (!queueUrl) throw new Error(`${stackName}/${id}: event source ${queueArn} is not a queue of this app`);
          const types = (p.FunctionResponseTypes as string[] | undefined) ?? [];
          mappings.push(() =>
            t.lambda.addSqsMapping({
              functionName: String(p.FunctionName),
              queueUrl,
              queueArn,
              batchSize: Number(p.BatchSize ?? 10),
              reportBatchItemFailures: types.includes('ReportBatchItemFailures'),
              sqs: t.sqs,
            }),
          );
          r.set(id, { ref: id, attributes: {} });
          break;
        }
        case 'AWS::StepFunctions::StateMachine': {
          const p = props(res);
          const name = physicalName(id, p.StateMachineName);
          let definition = typeof p.DefinitionString === 'string' ? p.DefinitionString : JSON.stringify(p.Definition);
          for (const [k, v] of Object.entries((p.DefinitionSubstitutions ?? {}) as Record<string, unknown>)) {
            definition = definition.split(`\${${k}}`).join(String(v));
          }
          const smArn = t.createStateMachine(name, definition);
          stateMachines.push(smArn);
          r.set(id, { ref: smArn, attributes: { Arn: smArn, Name: name } });
          break;
        }
        case 'AWS::Events::Rule': {
          const p = props(res);
          const periodSeconds = localPeriodSeconds(res);
          const enabled = p.State === undefined || p.State === 'ENABLED';
          const targets = (p.Targets as { Arn: string; Input?: string }[] | undefined) ?? [];
          if (enabled) {
            mappings.push(() => {
              for (const target of targets) {
                const event = target.Input
                  ? (JSON.parse(target.Input) as unknown)
                  : { version: '0', id: id, 'detail-type': 'Scheduled Event', source: 'aws.events', account: t.accountId, region: t.region, resources: [arn('events', `rule/${id}`)], detail: {} };
                t.lambda.addSchedule({ functionName: target.Arn, periodSeconds, event, name: `${stackName}/${id}` });
              }
            });
          }
          r.set(id, { ref: id, attributes: { Arn: arn('events', `rule/${id}`) } });
          break;
        }
        case 'AWS::ApiGateway::RestApi': {
          const apiId = id.toLowerCase().slice(0, 10);
          const root = `${apiId}-root`;
          apiPaths.set(root, '');
          r.set(id, { ref: apiId, attributes: { RootResourceId: root } });
          break;
        }
        case 'AWS::ApiGateway::Resource': {
          const p = props(res);
          const parent = apiPaths.get(String(p.ParentId));
          if (parent === undefined) throw new Error(`${stackName}/${id}: parent resource ${String(p.ParentId)} is unknown`);
          apiPaths.set(id, `${parent}/${String(p.PathPart)}`);
          r.set(id, { ref: id, attributes: {} });
          break;
        }
        case 'AWS::ApiGateway::Method': {
          const p = props(res);
          const resource = apiPaths.get(String(p.ResourceId)) || '/';
          const integration = p.Integration as { Type: string; Uri?: string };
          const method = String(p.HttpMethod);
          if (integration.Type === 'MOCK') break;
          const fn = /functions\/(.+)\/invocations/.exec(integration.Uri ?? '')?.[1];
          if (!fn) throw new Error(`${stackName}/${id}: cannot find the function in ${String(integration.Uri)}`);
          t.api.addRoute({
            method,
            resource,
            // AWS_IAM routes check SigV4 when the local gateway is told to (DTC_REQUIRE_AUTH=1).
            authorizationType: String(p.AuthorizationType ?? 'NONE'),
            invoke: async (event: APIGatewayProxyEvent) => {
              try {
                return (await t.lambda.invoke(fn, event)) as APIGatewayProxyResult;
              } catch (err) {
                // What API Gateway answers when a proxy integration's function fails.
                console.error(`[apigateway] ${method} ${resource}: ${(err as Error).stack ?? String(err)}`);
                return { statusCode: 502, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message: 'Internal server error' }) };
              }
            },
          });
          r.set(id, { ref: id, attributes: {} });
          break;
        }
        case 'AWS::ApiGateway::Stage': {
          const p = props(res);
          t.api.setStage(String(p.StageName));
          r.set(id, { ref: String(p.StageName), attributes: {} });
          break;
        }
        default: {
          // Accepted, not emulated: still answer Ref/GetAtt so the rest of the template resolves.
          const name = physicalName(id, undefined);
          r.set(id, { ref: name, attributes: { Arn: arn(res.Type.split('::')[1]!.toLowerCase(), name) } });
        }
      }
    }

    const stackOutputs: Record<string, string> = {};
    for (const [key, out] of Object.entries(template.Outputs ?? {})) {
      const value = String(r.resolve(out.Value));
      stackOutputs[key] = value;
      if (out.Export) exports.set(String(r.resolve(out.Export.Name)), value);
    }
    outputs[stackName] = stackOutputs;
  }

  Object.assign(process.env, environment);
  return { outputs, environment, tables, queues, stateMachines, startMappings: () => mappings.forEach((m) => m()) };
}

async function createTable(dynamodb: DynamoDBClient, name: string, p: Record<string, unknown>): Promise<void> {
  const gsis = p.GlobalSecondaryIndexes as CreateTableCommandInput['GlobalSecondaryIndexes'];
  const input: CreateTableCommandInput & { TableName: string } = {
    TableName: name,
    KeySchema: p.KeySchema as CreateTableCommandInput['KeySchema'],
    AttributeDefinitions: p.AttributeDefinitions as CreateTableCommandInput['AttributeDefinitions'],
    BillingMode: 'PAY_PER_REQUEST',
    ...(gsis?.length
      ? { GlobalSecondaryIndexes: gsis.map((g) => ({ IndexName: g.IndexName, KeySchema: g.KeySchema, Projection: g.Projection })) }
      : {}),
  };
  try {
    await createTableAndWait(dynamodb, input);
  } catch (err) {
    // A restart with the same data directory finds its tables: keep them and their data.
    if (!(err instanceof ResourceInUseException)) throw err;
  }
  // The template's TTL, so retention is visible locally (the embedded reaper deletes within seconds).
  const ttl = p.TimeToLiveSpecification as { AttributeName?: string; Enabled?: boolean } | undefined;
  if (ttl?.Enabled && ttl.AttributeName) {
    const now = (await dynamodb.send(new DescribeTimeToLiveCommand({ TableName: name }))).TimeToLiveDescription;
    if (now?.TimeToLiveStatus !== 'ENABLED') {
      await dynamodb.send(new UpdateTimeToLiveCommand({ TableName: name, TimeToLiveSpecification: { AttributeName: ttl.AttributeName, Enabled: true } }));
    }
  }
}

const QUEUE_ATTRIBUTES = ['VisibilityTimeout', 'MessageRetentionPeriod', 'DelaySeconds', 'ReceiveMessageWaitTimeSeconds', 'MaximumMessageSize', 'FifoQueue', 'ContentBasedDeduplication'];

async function createQueue(sqs: SQSClient, name: string, p: Record<string, unknown>): Promise<{ url: string; arn: string }> {
  const attributes: Record<string, string> = {};
  for (const k of QUEUE_ATTRIBUTES) if (p[k] !== undefined) attributes[k] = String(p[k]);
  if (p.RedrivePolicy) attributes.RedrivePolicy = JSON.stringify(p.RedrivePolicy);
  const out = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
  if (!out.QueueUrl) throw new Error(`queue ${name} was created without a URL`);
  const attrs = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: out.QueueUrl, AttributeNames: ['QueueArn'] }));
  const arn = attrs.Attributes?.QueueArn;
  if (!arn) throw new Error(`queue ${name} has no ARN`);
  return { url: out.QueueUrl, arn };
}
