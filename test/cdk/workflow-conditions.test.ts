// The state machine's DynamoDB tasks write what the log's table of state changes says, exactly: the
// same condition and update the TxLog and MemoryTxLog adapters derive (src/core/log-transitions.ts).
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../cdk/build';
import { toDynamo } from '../../src/core/log-dsl';
import { LOG_TRANSITIONS } from '../../src/core/log-transitions';

type Json = Record<string, any>;

let states: Record<string, Json>;

beforeAll(() => {
  const app = buildApp({ bundle: false });
  const machines = Object.values(Template.fromStack(app.coordinator).findResources('AWS::StepFunctions::StateMachine'));
  expect(machines).toHaveLength(1);
  const definition = machines[0]!.Properties.DefinitionString as string | { 'Fn::Join': [string, unknown[]] };
  // Tokens (the table name, the partition) become plain strings, so the definition parses as JSON.
  const text = typeof definition === 'string' ? definition : definition['Fn::Join'][1].map((part) => (typeof part === 'string' ? part : 'token')).join('');
  states = (JSON.parse(text) as Json).States as Record<string, Json>;
});

/** What each DynamoDB write task must be: its state change, with JSONPath strings where the execution supplies values. */
const EXPECTED: Record<string, ReturnType<typeof toDynamo<string>>> = {
  Decide: (() => {
    const write = LOG_TRANSITIONS.decide.write<string>({ status: '$.prepare.status', outcome: '$.prepare.outcome', reason: '$.prepare.reason', at: '$$.State.EnteredTime' });
    return toDynamo<string>(write.condition, write.update);
  })(),
};

/** A DynamoDB attribute value as the ASL spells it: a JSONPath (`S.$`) or a literal (`S`). */
const aslValue = (value: string) => (value.startsWith('$') ? { 'S.$': value } : { S: value });

describe('the state machine', () => {
  it('has no DynamoDB write task the table does not describe', () => {
    const writes = Object.entries(states).filter(([, s]) => s.Type === 'Task' && /:states:::dynamodb:(updateItem|putItem|deleteItem)$/.test(s.Resource as string));
    expect(writes.map(([name]) => name).sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  it.each(Object.entries(EXPECTED))('%s writes the condition and update of its state change', (name, expected) => {
    const parameters = states[name]!.Parameters as Json;
    expect(parameters.ConditionExpression).toBe(expected.ConditionExpression);
    expect(parameters.UpdateExpression).toBe(expected.UpdateExpression);
    expect(parameters.ExpressionAttributeNames).toEqual(expected.ExpressionAttributeNames);
    expect(parameters.ExpressionAttributeValues).toEqual(Object.fromEntries(Object.entries(expected.ExpressionAttributeValues ?? {}).map(([k, v]) => [k, aslValue(v)])));
  });
});
