// The state machine's DynamoDB tasks, run on the in-memory log. The definition carries the
// expressions cdk/workflow.ts derived from the table of state changes; this maps an updateItem back
// to the table's transition it must be (and fails loudly if the definition's expressions are not
// the table's), and a getItem to a consistent read in DynamoDB's attribute-value JSON.
import { marshall } from '@aws-sdk/util-dynamodb';
import { toDynamo } from '../../src/core/log-dsl';
import { LOG_TRANSITIONS } from '../../src/core/log-transitions';
import { mutated } from '../../src/core/mutations';
import type { Outcome } from '../../src/core/transaction';
import type { MemoryTxLog } from '../../src/memory/log';

type AttributeValue = { S?: string };
interface UpdateParameters {
  Key: { pk: AttributeValue };
  ConditionExpression: string;
  UpdateExpression: string;
  ExpressionAttributeValues: Record<string, AttributeValue>;
}

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

export async function stepFunctionsDynamoTask(log: MemoryTxLog, operation: string, parameters: Record<string, unknown>): Promise<unknown> {
  const txId = (parameters.Key as { pk?: AttributeValue } | undefined)?.pk?.S;
  if (!txId) throw new Error(`a ${operation} task without a pk: ${JSON.stringify(parameters)}`);
  if (operation === 'getItem') {
    const record = await log.get(txId);
    return record ? { Item: marshall(record, { removeUndefinedValues: true }) } : {};
  }
  if (operation !== 'updateItem') throw new Error(`the workflow's ${operation} task has no transition in the table`);
  const p = parameters as unknown as UpdateParameters;
  const { expression, slots } = decideShape();
  // A planted mutation changes the table's write at run time, not the definition synthesized before.
  if (!mutated('decideWithoutPreparing') && (p.ConditionExpression !== expression.ConditionExpression || p.UpdateExpression !== expression.UpdateExpression)) {
    throw new Error(`the workflow's updateItem is not the table's Decide write: ${p.ConditionExpression} / ${p.UpdateExpression}`);
  }
  const args: Partial<Record<keyof typeof SENTINEL, string>> = {};
  for (const [name, slot] of slots) args[slot] = p.ExpressionAttributeValues[name]?.S;
  const { status, outcome, reason, at } = args;
  if ((status !== 'COMMITTING' && status !== 'ABORTING') || !outcome || reason === undefined || !at) {
    throw new Error(`the workflow's Decide write carries ${JSON.stringify(args)}`);
  }
  const result = await log.decide(txId, { status, outcome: outcome as Outcome, reason }, at);
  if (!result.applied) throw Object.assign(new Error('The conditional request failed'), { name: 'ConditionalCheckFailedException' });
  return {};
}
