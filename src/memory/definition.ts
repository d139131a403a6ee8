// The coordinator's state machine definition as cdk/workflow.ts synthesizes it, with its tokens
// resolved to plain names, for the in-memory Step Functions. Synthesis takes seconds: it is done
// once per process.
import { App, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Workflow } from '../../cdk/workflow';
import type { JsonObject } from './asl';
import { toDynamo } from '../core/log-dsl';
import { LOG_TRANSITIONS } from '../core/log-transitions';
import type { Outcome } from '../core/transaction';

/** What the definition's Tasks name: the dispatch Lambda (FunctionName) and the log table (TableName). */
export const WORKFLOW_DISPATCH_ARN = 'arn:aws:lambda:us-east-1:000000000000:function:dispatch';
export const WORKFLOW_TX_TABLE = 'txlog';

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
  new Workflow(stack, 'Workflow', {
    txTable: dynamodb.Table.fromTableName(stack, 'TxTable', WORKFLOW_TX_TABLE),
    dispatch: lambda.Function.fromFunctionArn(stack, 'Dispatch', WORKFLOW_DISPATCH_ARN),
  });
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

// The Decide step's updateItem carries the table's Decide write (cdk/workflow.ts derives it), with
// value names the DSL chose: which value is which argument is found by deriving the same write with
// marker values.
const SENTINEL = { status: '\u0000status', outcome: '\u0000outcome', reason: '\u0000reason', at: '\u0000at' } as const;

/** Which expression value of the table's Decide write carries which argument. */
function decideShape(): { expression: ReturnType<typeof toDynamo>; slots: Map<string, keyof typeof SENTINEL> } {
  const write = LOG_TRANSITIONS.decide.write<string>({ ...SENTINEL });
  const expression = toDynamo<string>(write.condition, write.update);
  const slots = new Map<string, keyof typeof SENTINEL>();
  for (const [name, value] of Object.entries(expression.ExpressionAttributeValues ?? {})) {
    const slot = (Object.keys(SENTINEL) as (keyof typeof SENTINEL)[]).find((k) => SENTINEL[k] === value);
    if (slot) slots.set(name, slot);
  }
  return { expression, slots };
}


export interface DecideArguments {
  status: 'COMMITTING' | 'ABORTING';
  outcome: Outcome;
  reason: string;
  at: string;
}

/**
 * The arguments of the table's Decide write, read from the Decide step's updateItem parameters.
 * Unless told otherwise, it first checks that the parameters' expressions are the table's.
 */
export function decideArguments(parameters: Record<string, unknown>, options: { checkExpressions: boolean } = { checkExpressions: true }): DecideArguments {
  const p = parameters as { ConditionExpression?: string; UpdateExpression?: string; ExpressionAttributeValues?: Record<string, { S?: string }> };
  const { expression, slots } = decideShape();
  if (options.checkExpressions && (p.ConditionExpression !== expression.ConditionExpression || p.UpdateExpression !== expression.UpdateExpression)) {
    throw new Error(`the workflow's updateItem is not the table's Decide write: ${p.ConditionExpression} / ${p.UpdateExpression}`);
  }
  const args: Partial<Record<keyof typeof SENTINEL, string>> = {};
  for (const [name, slot] of slots) args[slot] = p.ExpressionAttributeValues?.[name]?.S;
  const { status, outcome, reason, at } = args;
  if ((status !== 'COMMITTING' && status !== 'ABORTING') || (outcome !== 'COMMIT' && outcome !== 'ABORT') || reason === undefined || !at) {
    throw new Error(`the workflow's Decide write carries ${JSON.stringify(args)}`);
  }
  return { status, outcome, reason, at };
}
