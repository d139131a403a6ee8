// cdk-nag (AwsSolutions) findings that are accepted on purpose, each with its reason. Findings on
// constructs this app writes itself are acknowledged where the construct is made (api.ts,
// functions.ts); the ones here sit on resources that CDK's grants and integrations generate.
// `npm test` runs the checks (test/cdk/nag.test.ts): a new finding fails it until it is fixed or
// acknowledged here with a reason.
import { Stack, Validations } from 'aws-cdk-lib';
import type { CfnStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import type { IConstruct } from 'constructs';
import type { CoordinatorStack } from './coordinator-stack';

/** The logical id CloudFormation will see for a construct's resource, as cdk-nag prints it. */
export function logicalIdOf(construct: IConstruct): string {
  const resource = construct.node.defaultChild ?? construct;
  const stack = Stack.of(construct);
  return stack.resolve(stack.getLogicalId(resource as Parameters<Stack['getLogicalId']>[0])) as string;
}

/** cdk-nag's rendering of "any execution of the state machine named `name`" in an IAM5 finding. */
function executionsOf(name: string): string {
  return `Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:${name}:*`;
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
  // Whoever makes sure a group has a supervisor (api, supervise, reply, the sweeper) describes the
  // group's executions: they are named per group and generation, unknown in advance, so the grant
  // covers this state machine's executions only.
  const cfn = stateMachine.node.defaultChild as CfnStateMachine;
  const name = cfn.stateMachineName;
  if (name === undefined) throw new Error('the supervisor state machine needs a name for its execution grants');
  const executions = {
    id: `AwsSolutions-IAM5[${executionsOf(name)}]`,
    reason: 'DescribeExecution on executions of this one state machine (named per supervision group and generation, so not known in advance).',
  };
  const supervisors = stack.node.tryFindChild('Supervisors');
  if (supervisors) Validations.of(supervisors).acknowledge(executions);
  const sweeper = stack.recovery?.sweeper;
  if (sweeper?.role) Validations.of(sweeper.role).acknowledge(executions);
  const tracing = Stack.of(stack).resolve(cfn.tracingConfiguration) as { enabled?: boolean } | undefined;
  if (tracing?.enabled !== true) {
    Validations.of(stateMachine).acknowledge({
      id: 'AwsSolutions-SF2',
      reason: 'X-Ray tracing is switched off for this deployment (-c tracing=false, for a target without X-Ray such as LocalStack); it is on by default.',
    });
  }
}
