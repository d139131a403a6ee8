// The supervisors' state machine definition as cdk/workflow.ts synthesizes it, with its tokens
// resolved to plain names, for the in-memory Step Functions. Synthesis takes seconds: it is done
// once per process.
import { App, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Workflow } from '../../cdk/workflow';
import type { JsonObject } from './asl';

/** What the definition's Supervise task names: the supervise Lambda (FunctionName). */
export const WORKFLOW_SUPERVISE_ARN = 'arn:aws:lambda:us-east-1:000000000000:function:supervise';

let synthesized: string | undefined;

/** A fresh copy of the definition each call (callers may change theirs). */
export function workflowDefinition(): JsonObject {
  synthesized ??= synthesize();
  return JSON.parse(synthesized) as JsonObject;
}

const PSEUDO: Record<string, string> = { 'AWS::Partition': 'aws', 'AWS::Region': 'us-east-1', 'AWS::AccountId': '000000000000', 'AWS::URLSuffix': 'amazonaws.com' };

function synthesize(): string {
  const app = new App();
  const stack = new Stack(app, 'MemoryWorkflow', { env: { account: '000000000000', region: 'us-east-1' } });
  new Workflow(stack, 'Workflow', { supervise: lambda.Function.fromFunctionArn(stack, 'Supervise', WORKFLOW_SUPERVISE_ARN) });
  const resources = app.synth().getStackByName(stack.stackName).template.Resources as Record<string, { Type: string; Properties: Record<string, unknown> }>;
  const machines = Object.values(resources).filter((r) => r.Type === 'AWS::StepFunctions::StateMachine');
  if (machines.length !== 1) throw new Error(`expected one state machine in the synthesized workflow, found ${machines.length}`);
  const definition = machines[0]!.Properties.DefinitionString as string | { 'Fn::Join': [string, unknown[]] };
  if (typeof definition === 'string') return definition;
  const [separator, parts] = definition['Fn::Join'];
  return parts
    .map((part) => {
      if (typeof part === 'string') return part;
      const ref = (part as { Ref?: string }).Ref;
      const value = ref !== undefined ? PSEUDO[ref] : undefined;
      if (value === undefined) throw new Error(`unresolved token in the workflow definition: ${JSON.stringify(part)}`);
      return value;
    })
    .join(separator);
}

