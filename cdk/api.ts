import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { z } from 'zod';
import { startRequestSchema } from '../src/core/transaction';
import type { DtcConfig } from './build';

export interface ApiProps {
  handler: lambda.IFunction;
  /** Serves GET /transactions/{id} (and its waits); default: `handler`. */
  waiter?: lambda.IFunction;
  /** Throttling, logging and tracing; defaults are cdk.json's. */
  config?: Partial<
    Pick<
      DtcConfig,
      'prefix' | 'apiRateLimit' | 'apiBurstLimit' | 'startRateLimit' | 'startBurstLimit' | 'logRetentionDays' | 'tracing' | 'apiGatewayCloudWatchRole'
    >
  >;
}

/**
 * The body schema of `POST /transactions` as an API Gateway model (JSON Schema draft 4), derived
 * from the zod schema the api function validates with, so the two cannot drift. zod stays the
 * authority: the function still validates every body and owns the detailed error messages; the
 * gateway only turns malformed bodies away before they cost an invocation. `default` keywords are
 * dropped: API Gateway does not apply them, and the deployment's defaults are the function's.
 */
export function startTransactionModelSchema(): apigw.JsonSchema {
  const generated = z.toJSONSchema(startRequestSchema(), { target: 'draft-4', io: 'input' }) as Record<string, unknown>;
  return toCdkSchema(generated);
}

/** zod's JSON Schema keys -> the property names of CDK's JsonSchema (`$schema` -> `schema`). */
function toCdkSchema(node: Record<string, unknown>): apigw.JsonSchema {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === 'default') continue;
    if (key === '$schema') {
      if (value !== 'http://json-schema.org/draft-04/schema#') throw new Error(`expected a draft-04 schema, got ${String(value)}`);
      out.schema = apigw.JsonSchemaVersion.DRAFT4;
    } else if (key === 'properties') {
      out.properties = Object.fromEntries(
        Object.entries(value as Record<string, Record<string, unknown>>).map(([name, schema]) => [name, toCdkSchema(schema)]),
      );
    } else if (key === 'items') {
      out.items = toCdkSchema(value as Record<string, unknown>);
    } else if (key.startsWith('$')) {
      // $ref/$defs would need translating too; the start request has none, so fail loudly if it grows some.
      throw new Error(`JSON Schema keyword ${key} is not translated for the API Gateway model`);
    } else {
      out[key] = value;
    }
  }
  return out as apigw.JsonSchema;
}

/**
 * What a body rejected by the gateway's validator looks like: the API's own error envelope and
 * code, so clients handle one shape. The validator's detail goes to the access log
 * (`validationError`); it can contain quotes, which a gateway response template cannot escape.
 */
export const BAD_REQUEST_BODY_TEMPLATE =
  '{"error":{"code":"InvalidRequest","message":$context.error.messageString,"requestId":"$context.requestId"}}';

/** The REST API services use to start and inspect transactions; every route goes to one function. */
export class Api extends Construct {
  readonly restApi: apigw.RestApi;
  readonly integration: apigw.LambdaIntegration;
  readonly accessLogs: logs.LogGroup;

  constructor(scope: Construct, id: string, props: ApiProps) {
    super(scope, id);
    const config = props.config ?? {};
    const cloudWatchRole = config.apiGatewayCloudWatchRole ?? true;
    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: config.logRetentionDays ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.restApi = new apigw.RestApi(this, 'RestApi', {
      restApiName: `${config.prefix ?? 'dtc'}-api`,
      // Callers are services in the same region: edge caching in front of them only adds a hop.
      endpointTypes: [apigw.EndpointType.REGIONAL],
      // Starting a transaction is a privileged act: callers sign with SigV4.
      defaultMethodOptions: { authorizationType: apigw.AuthorizationType.IAM },
      // Logging needs the region's API Gateway -> CloudWatch Logs role, an account-wide setting.
      // Created (and retained on delete: other APIs may rely on it) unless the account has one.
      cloudWatchRole,
      deployOptions: {
        stageName: 'v1',
        // A bound on what one runaway client can cost every other transaction.
        throttlingRateLimit: config.apiRateLimit ?? 5000,
        throttlingBurstLimit: config.apiBurstLimit ?? 5000,
        // Starts write the log and send PREPARE: throttled to what the log's default quotas carry.
        methodOptions: {
          // A method's settings replace the stage-wide ones: repeat the logging choice.
          '/transactions/POST': {
            throttlingRateLimit: config.startRateLimit ?? 3000,
            throttlingBurstLimit: config.startBurstLimit ?? 5000,
            loggingLevel: apigw.MethodLoggingLevel.ERROR,
            dataTraceEnabled: false,
          },
        },
        // Execution logs for failures only (request bodies carry business data: never logged).
        loggingLevel: apigw.MethodLoggingLevel.ERROR,
        dataTraceEnabled: false,
        accessLogDestination: new apigw.LogGroupLogDestination(this.accessLogs),
        accessLogFormat: apigw.AccessLogFormat.custom(
          JSON.stringify({
            requestId: apigw.AccessLogField.contextRequestId(),
            // The throttled-requests metric (cdk/observability.ts) is per API: two environments share the namespace.
            apiId: apigw.AccessLogField.contextApiId(),
            time: apigw.AccessLogField.contextRequestTime(),
            caller: apigw.AccessLogField.contextIdentityCaller(),
            userArn: apigw.AccessLogField.contextIdentityUserArn(),
            sourceIp: apigw.AccessLogField.contextIdentitySourceIp(),
            method: apigw.AccessLogField.contextHttpMethod(),
            resource: apigw.AccessLogField.contextResourcePath(),
            status: apigw.AccessLogField.contextStatus(),
            latencyMs: apigw.AccessLogField.contextResponseLatency(),
            integrationLatencyMs: apigw.AccessLogField.contextIntegrationLatency(),
            error: apigw.AccessLogField.contextErrorMessage(),
            validationError: apigw.AccessLogField.contextErrorValidationErrorString(),
          }),
        ),
        tracingEnabled: config.tracing ?? true,
      },
    });
    // RestApi always adds an `Endpoint` output; the stack's `ApiUrl` is the one clients read.
    this.restApi.node.tryRemoveChild('Endpoint');

    // One permission per method is enough; test-invoke permissions would double them.
    this.integration = new apigw.LambdaIntegration(props.handler, { proxy: true, allowTestInvoke: false });
    const model = this.restApi.addModel('StartTransaction', {
      contentType: 'application/json',
      modelName: 'StartTransaction',
      description: 'POST /transactions body (generated from the zod schema in src/core/transaction.ts)',
      schema: startTransactionModelSchema(),
    });
    const validator = this.restApi.addRequestValidator('Validator', {
      requestValidatorName: 'body-and-parameters',
      validateRequestBody: true,
      validateRequestParameters: true,
    });
    this.restApi.addGatewayResponse('BadRequestBody', {
      type: apigw.ResponseType.BAD_REQUEST_BODY,
      statusCode: '400',
      templates: { 'application/json': BAD_REQUEST_BODY_TEMPLATE },
    });

    const transactions = this.restApi.root.addResource('transactions');
    transactions.addMethod('POST', this.integration, { requestValidator: validator, requestModels: { 'application/json': model } });
    transactions.addMethod('GET', this.integration, {
      requestValidator: validator,
      // Declared optional: the function checks their values (a bounded limit, an opaque cursor).
      requestParameters: { 'method.request.querystring.limit': false, 'method.request.querystring.cursor': false },
    });
    const transaction = transactions.addResource('{id}');
    const waiter = props.waiter ? new apigw.LambdaIntegration(props.waiter, { proxy: true, allowTestInvoke: false }) : this.integration;
    transaction.addMethod('GET', waiter, {
      requestValidator: validator,
      requestParameters: { 'method.request.path.id': true, 'method.request.querystring.wait': false },
    });
    // For participants (and operators): the outcome only, and the abort request. A participant's role
    // needs execute-api:Invoke on these two routes and nothing of the log table or Step Functions.
    transaction.addResource('decision').addMethod('GET', this.integration, { requestValidator: validator, requestParameters: { 'method.request.path.id': true } });
    transaction.addResource('abort').addMethod('POST', this.integration, { requestValidator: validator, requestParameters: { 'method.request.path.id': true } });
    // For operators only (the function refuses a participant's role): release a participant being
    // retired for good from phase two's wait, recorded on the transaction.
    transaction.addResource('release').addMethod('POST', this.integration, { requestValidator: validator, requestParameters: { 'method.request.path.id': true } });

    // The lock service on its own (src/locks/api.ts): acquire, renew, release, inspect; and the
    // record of resolved deadlocks.
    const lock = this.restApi.root.addResource('locks').addResource('{resource}');
    for (const method of ['POST', 'PUT', 'GET']) {
      lock.addMethod(method, this.integration, { requestValidator: validator, requestParameters: { 'method.request.path.resource': true } });
    }
    lock.addMethod('DELETE', this.integration, {
      requestValidator: validator,
      requestParameters: { 'method.request.path.resource': true, 'method.request.querystring.owner': false },
    });
    this.restApi.root.addResource('deadlocks').addMethod('GET', this.integration, {
      requestValidator: validator,
      requestParameters: { 'method.request.querystring.limit': false, 'method.request.querystring.cursor': false },
    });

    Validations.of(this.restApi).acknowledge(
      {
        id: 'AwsSolutions-APIG3',
        reason:
          'Callers are services signing with IAM (SigV4) and every stage is throttled; a WAF web ACL is an account-level choice (docs/deploy.md shows how to attach one).',
      },
      {
        id: 'AwsSolutions-COG4',
        reason: 'The API authorizes with IAM (SigV4): its callers are services with IAM principals, not Cognito users.',
      },
    );
    if (cloudWatchRole) {
      Validations.of(this.restApi).acknowledge({
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
        reason: "API Gateway's account-level logging role: AWS's own policy for exactly this service, scoped by AWS to log delivery.",
      });
    }
  }
}
