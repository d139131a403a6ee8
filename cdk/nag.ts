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
  // Supervisors are named after their groups (creation bucket and shard, or a parked participant),
  // so their execution ARNs are not known in advance: DescribeExecution covers this state machine's
  // executions only, for whoever checks that a group has a running supervisor.
  const executions = `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:${stack.supervisorName}:*]`;
  const reason = 'DescribeExecution on the executions of the one supervisor state machine (named per group, so not known in advance).';
  const sweeper = stack.recovery?.sweeper;
  if (sweeper?.role) Validations.of(sweeper.role).acknowledge({ id: executions, reason });
  Validations.of(stack.supervisors).acknowledge({ id: executions, reason });
}
