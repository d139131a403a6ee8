// cdk-nag (AwsSolutions) findings that are accepted on purpose, each with its reason. Findings on
// constructs this app writes itself are acknowledged where the construct is made (api.ts,
// functions.ts); the ones here sit on resources that CDK's grants and integrations generate.
// `npm test` runs the checks (test/cdk/nag.test.ts): a new finding fails it until it is fixed or
// acknowledged here with a reason.
import { Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import type { CoordinatorStack } from './coordinator-stack';

/** The logical id CloudFormation will see for a construct's resource, as cdk-nag prints it. */
export function logicalIdOf(construct: IConstruct): string {
  const resource = construct.node.defaultChild ?? construct;
  const stack = Stack.of(construct);
  return stack.resolve(stack.getLogicalId(resource as Parameters<Stack['getLogicalId']>[0])) as string;
}

/** cdk-nag's rendering of "any execution of this state machine" in an IAM5 finding. */
function executionsOf(stateMachine: IConstruct): string {
  return `Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"${logicalIdOf(stateMachine)}"}]}]}:*`;
}

export function acknowledgeCoordinatorFindings(stack: CoordinatorStack): void {
  const { stateMachine } = stack.workflow;
  Validations.of(stateMachine).acknowledge(
    {
      id: 'AwsSolutions-SF1',
      reason:
        'Standard workflows keep every state transition in the execution history for 90 days; the log group takes errors only, so log cost follows failures rather than traffic.',
    },
    {
      id: `AwsSolutions-IAM5[Resource::<${logicalIdOf(stack.functions.supervise)}.Arn>:*]`,
      reason: "CDK's LambdaInvoke grant: the supervise function and its versions/aliases (`:*`), no other function.",
    },
    {
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'X-Ray (PutTraceSegments, GetSamplingRules...) and CloudWatch Logs vended delivery (CreateLogDelivery...) actions support no resource-level permissions.',
    },
  );
  // The recovery sweeper describes the execution a log record names: execution ARNs are per
  // transaction and unknown in advance, so the grant covers this state machine's executions only.
  const sweeper = stack.recovery?.sweeper;
  if (sweeper?.role) {
    Validations.of(sweeper.role).acknowledge({
      id: `AwsSolutions-IAM5[${executionsOf(stateMachine)}]`,
      reason: 'DescribeExecution on executions of this one state machine (named per transaction, so not known in advance).',
    });
  }
}
