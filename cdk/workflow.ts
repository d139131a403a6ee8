import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { toDynamo } from '../src/core/log-dsl';
import { LOG_TRANSITIONS } from '../src/core/log-transitions';

export interface WorkflowProps {
  txTable: dynamodb.ITable;
  dispatch: lambda.IFunction;
}

const Attr = tasks.DynamoAttributeValue;
const { JsonPath } = sfn;

const LAMBDA_ERRORS = [
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
];

/** Transient DynamoDB failures; a retried conditional write is safe (it can only win once). */
const DYNAMO_RETRY: sfn.RetryProps = {
  errors: [
    'DynamoDB.ProvisionedThroughputExceededException',
    'DynamoDB.ThrottlingException',
    'DynamoDB.InternalServerErrorException',
    'DynamoDB.RequestLimitExceeded',
    'States.Timeout',
  ],
  interval: Duration.seconds(1),
  backoffRate: 2,
  maxAttempts: 6,
  jitterStrategy: sfn.JitterType.FULL,
};

const DYNAMO_TIMEOUT = sfn.Timeout.duration(Duration.seconds(10));

const txKey = () => ({ pk: Attr.fromString(JsonPath.stringAt('$.txId')) });
const now = () => Attr.fromString(JsonPath.stringAt('$$.State.EnteredTime'));

/**
 * The Decide step's write, from the log's table (src/core/log-transitions.ts): the outcome the Prepare
 * task answered (or PrepareFailed made), at the time the state was entered.
 */
export function decideExpressions() {
  const at = now(); // one object, so decidedAt and updatedAt share one value
  const write = LOG_TRANSITIONS.decide.write<tasks.DynamoAttributeValue>({
    status: Attr.fromString(JsonPath.stringAt('$.prepare.status')),
    outcome: Attr.fromString(JsonPath.stringAt('$.prepare.outcome')),
    reason: Attr.fromString(JsonPath.stringAt('$.prepare.reason')),
    at,
  });
  const derived = toDynamo<tasks.DynamoAttributeValue | string>(write.condition, write.update);
  const values = Object.entries(derived.ExpressionAttributeValues ?? {}).map(([name, value]) => {
    if (typeof value === 'string') return [name, Attr.fromString(value)] as const;
    if (value instanceof tasks.DynamoAttributeValue) return [name, value] as const;
    throw new Error(`the Decide step has no DynamoDB attribute value for ${name}: ${JSON.stringify(value)}`);
  });
  return {
    ConditionExpression: derived.ConditionExpression,
    UpdateExpression: derived.UpdateExpression ?? '',
    ExpressionAttributeNames: derived.ExpressionAttributeNames,
    ExpressionAttributeValues: Object.fromEntries(values),
  };
}

/**
 * One Standard execution per transaction: Prepare -> Decide (the commit point) -> Commit|Abort ->
 * Finalize. State names are a contract: tests and the embedded local stack refer to them.
 * JSONPath only, because the local interpreter ignores JSONata.
 */
export class Workflow extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: WorkflowProps) {
    super(scope, id);
    const { txTable: table, dispatch } = props;

    // One callback per phase: dispatch stores the token and sends the messages; the reply function
    // completes the task when the last vote (or the first NO) or the last ACK is recorded.
    const callback = (name: string, phase: string, timeoutPath: string, resultPath: string) => {
      return new tasks.LambdaInvoke(this, name, {
        lambdaFunction: dispatch,
        integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
        payload: sfn.TaskInput.fromObject({ txId: JsonPath.stringAt('$.txId'), phase, taskToken: JsonPath.taskToken }),
        taskTimeout: sfn.Timeout.at(timeoutPath),
        resultPath,
        // Replaced by the retries each caller adds, which the state names' contract fixes.
        retryOnServiceExceptions: false,
      });
    };
    const lambdaRetry: sfn.RetryProps = {
      errors: LAMBDA_ERRORS,
      interval: Duration.seconds(1),
      backoffRate: 2,
      maxAttempts: 3,
    };

    const done = new sfn.Succeed(this, 'Done');

    // The last step: dispatch writes the final status (conditional on the phase-two status, so a
    // second Finalize is a no-op) and releases the locks the coordinator took for the request's
    // declared resources. One Lambda task instead of a DynamoDB task, a Choice and a release task:
    // state transitions are what a transaction costs most (docs/performance.md). If it keeps
    // failing, the execution fails and the sweeper resumes the still-open record.
    const finalize = new tasks.LambdaInvoke(this, 'Finalize', {
      lambdaFunction: dispatch,
      payload: sfn.TaskInput.fromObject({ txId: JsonPath.stringAt('$.txId'), phase: 'FINALIZE', result: JsonPath.objectAt('$.phaseTwo') }),
      resultPath: JsonPath.DISCARD,
      taskTimeout: sfn.Timeout.duration(Duration.seconds(30)),
      retryOnServiceExceptions: false,
    });
    finalize.addRetry({
      errors: [...LAMBDA_ERRORS, 'States.TaskFailed', 'States.Timeout'],
      interval: Duration.seconds(1),
      backoffRate: 2,
      maxAttempts: 6,
      jitterStrategy: sfn.JitterType.FULL,
    });

    // Phase two never gives up: a participant that voted YES holds prepared state until it hears
    // the decision, so the only way out is to deliver it. Timeouts re-send to the un-acked only.
    const phaseTwo = (name: 'Commit' | 'Abort', phase: 'COMMIT' | 'ABORT') => {
      const task = callback(name, phase, '$.timeouts.commitSeconds', '$.phaseTwo');
      task.addRetry({
        errors: ['States.Timeout'],
        interval: Duration.seconds(1),
        backoffRate: 2,
        maxDelay: Duration.seconds(60),
        jitterStrategy: sfn.JitterType.FULL,
        maxAttempts: 10,
      });
      // A failed dispatch (a table or queue throttled past the SDK's own retries) is re-sent on the
      // same kind of capped, jittered backoff rather than only after the 60 s wait below.
      task.addRetry({
        errors: ['States.TaskFailed'],
        interval: Duration.seconds(1),
        backoffRate: 2,
        maxDelay: Duration.seconds(30),
        jitterStrategy: sfn.JitterType.FULL,
        maxAttempts: 6,
      });
      const backoff = new sfn.Wait(this, `${name}Backoff`, { time: sfn.WaitTime.duration(Duration.seconds(60)) });
      task.addCatch(backoff, { errors: ['States.ALL'], resultPath: '$.error' });
      backoff.next(task);
      task.next(finalize);
      return task;
    };
    const commit = phaseTwo('Commit', 'COMMIT');
    const abort = phaseTwo('Abort', 'ABORT');

    // Exactly one decision: whoever else aborts (client, deadlock detector, sweeper) uses the same
    // condition (TxLog.decideAbort), and the loser reads the winner's decision instead of writing its
    // own. Condition and update come from the log's table of state changes.
    const decideWrite = decideExpressions();
    const decide = new tasks.DynamoUpdateItem(this, 'Decide', {
      table,
      key: txKey(),
      updateExpression: decideWrite.UpdateExpression,
      conditionExpression: decideWrite.ConditionExpression,
      expressionAttributeNames: decideWrite.ExpressionAttributeNames,
      expressionAttributeValues: decideWrite.ExpressionAttributeValues,
      resultPath: JsonPath.DISCARD,
      taskTimeout: DYNAMO_TIMEOUT,
    });
    decide.addRetry(DYNAMO_RETRY);

    const readDecision = new tasks.DynamoGetItem(this, 'ReadDecision', {
      table,
      key: txKey(),
      consistentRead: true,
      resultSelector: { status: JsonPath.stringAt('$.Item.status.S') },
      resultPath: '$.current',
      taskTimeout: DYNAMO_TIMEOUT,
    });
    readDecision.addRetry(DYNAMO_RETRY);
    // A write that timed out may still have won: the record, not the error, says what happened.
    decide.addCatch(readDecision, { errors: ['DynamoDB.ConditionalCheckFailedException'], resultPath: '$.error' });
    decide.addCatch(readDecision, { errors: ['States.ALL'], resultPath: '$.error' });
    const status = (value: string) => sfn.Condition.stringEquals('$.current.status', value);
    readDecision.next(
      new sfn.Choice(this, 'RouteByStatus')
        .when(status('COMMITTING'), commit)
        .when(status('ABORTING'), abort)
        .when(sfn.Condition.or(status('COMMITTED'), status('ABORTED')), done)
        .when(status('PREPARING'), decide)
        .otherwise(new sfn.Fail(this, 'UnknownStatus', { error: 'UnknownStatus', cause: 'the log record has an unknown status' })),
    );
    decide.next(
      new sfn.Choice(this, 'Decided')
        .when(sfn.Condition.stringEquals('$.prepare.outcome', 'COMMIT'), commit)
        .otherwise(abort),
    );

    const prepare = callback('Prepare', 'PREPARE', '$.timeouts.prepareSeconds', '$.prepare');
    prepare.addRetry(lambdaRetry);
    // dispatch could not get a declared resource's lock within one invocation: try again while the
    // prepare deadline allows (dispatch decides ABORT itself once it has passed).
    prepare.addRetry({ errors: ['LockWaitTimeoutError'], interval: Duration.seconds(1), backoffRate: 1.5, maxDelay: Duration.seconds(5), maxAttempts: 50 });
    // A dispatch that failed on a transient fault is tried again (it re-sends only to those that
    // have not voted) before the failure turns into an abort.
    prepare.addRetry({ errors: ['States.TaskFailed'], interval: Duration.seconds(1), backoffRate: 2, maxAttempts: 2 });
    // Presumed abort: a prepare that cannot finish (timeout, dispatch failure) decides ABORT.
    const prepareFailed = new sfn.Pass(this, 'PrepareFailed', {
      parameters: {
        outcome: 'ABORT',
        status: 'ABORTING',
        reason: JsonPath.format('prepare did not complete: {}', JsonPath.stringAt('$.error.Error')),
      },
      resultPath: '$.prepare',
    });
    prepare.addCatch(prepareFailed, { errors: ['States.ALL'], resultPath: '$.error' });
    prepareFailed.next(decide);
    prepare.next(decide);

    // Every execution starts in Prepare, recovery executions (src/recovery.ts) too: for a record
    // that is already decided, dispatch answers Prepare at once with the decision, Decide's
    // condition fails, and ReadDecision routes to Commit or Abort. That costs a recovery three
    // extra transitions and saves every transaction the start Choice it would otherwise take.
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(prepare),
      tracingEnabled: true,
      logs: {
        destination: new logs.LogGroup(this, 'Logs', {
          retention: logs.RetentionDays.ONE_MONTH,
          removalPolicy: RemovalPolicy.DESTROY,
        }),
        level: sfn.LogLevel.ERROR,
      },
    });
  }
}
