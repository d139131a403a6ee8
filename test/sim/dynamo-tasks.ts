// The state machine's DynamoDB tasks, run on the in-memory log. The definition carries the
// expressions cdk/workflow.ts derived from the table of state changes; this maps an updateItem back
// to the table's transition it must be (and fails loudly if the definition's expressions are not
// the table's), and a getItem to a consistent read in DynamoDB's attribute-value JSON.
import { marshall } from '@aws-sdk/util-dynamodb';
import { mutated } from '../../src/core/mutations';
import { decideArguments } from '../../src/memory/definition';
import type { MemoryTxLog } from '../../src/memory/log';

type AttributeValue = { S?: string };

export async function stepFunctionsDynamoTask(log: MemoryTxLog, operation: string, parameters: Record<string, unknown>): Promise<unknown> {
  const txId = (parameters.Key as { pk?: AttributeValue } | undefined)?.pk?.S;
  if (!txId) throw new Error(`a ${operation} task without a pk: ${JSON.stringify(parameters)}`);
  if (operation === 'getItem') {
    const record = await log.get(txId);
    return record ? { Item: marshall(record, { removeUndefinedValues: true }) } : {};
  }
  if (operation !== 'updateItem') throw new Error(`the workflow's ${operation} task has no transition in the table`);
  // A planted mutation changes the table's write at run time, not the definition synthesized before.
  const { status, outcome, reason, at } = decideArguments(parameters, { checkExpressions: !mutated('decideWithoutPreparing') });
  const result = await log.decide(txId, { status, outcome, reason }, at);
  if (!result.applied) throw Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });
  return {};
}
