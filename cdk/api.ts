import * as apigw from 'aws-cdk-lib/aws-apigateway';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

export interface ApiProps {
  handler: lambda.IFunction;
}

/** The REST API services use to start and inspect transactions; every route goes to one function. */
export class Api extends Construct {
  readonly restApi: apigw.RestApi;

  constructor(scope: Construct, id: string, props: ApiProps) {
    super(scope, id);
    this.restApi = new apigw.RestApi(this, 'RestApi', {
      restApiName: 'dtc-api',
      // Callers are services in the same region: edge caching in front of them only adds a hop.
      endpointTypes: [apigw.EndpointType.REGIONAL],
      // Starting a transaction is a privileged act: callers sign with SigV4.
      defaultMethodOptions: { authorizationType: apigw.AuthorizationType.IAM },
      // An account-wide setting, not this app's to own.
      cloudWatchRole: false,
      deployOptions: {
        stageName: 'v1',
        // A bound on what one runaway client can cost every other transaction.
        throttlingRateLimit: 1000,
        throttlingBurstLimit: 2000,
      },
    });
    // RestApi always adds an `Endpoint` output; the stack's `ApiUrl` is the one clients read.
    this.restApi.node.tryRemoveChild('Endpoint');
    // One permission per method is enough; test-invoke permissions would double them.
    const integration = new apigw.LambdaIntegration(props.handler, { proxy: true, allowTestInvoke: false });
    const transactions = this.restApi.root.addResource('transactions');
    transactions.addMethod('POST', integration);
    transactions.addMethod('GET', integration);
    transactions.addResource('{id}').addMethod('GET', integration);
  }
}
