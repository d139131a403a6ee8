import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';

export interface WorkflowProps {
  supervise: lambda.IFunction;
  /** The execution log group's name: under `/aws/vendedlogs/states/`, where Step Functions' log delivery keeps its resource policy small. */
  logGroupName?: string;
  logRetentionDays?: number;
  tracing?: boolean;
}

const LAMBDA_ERRORS = ['Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException', 'Lambda.TooManyRequestsException'];

/**
 * A group's supervisor: one Standard execution per group of transactions (src/supervisor.ts), named
 * after the group. Sleep (until an absolute time) -> Supervise -> Route -> Sleep ... -> Done.
 * Three state transitions per run, whatever the group's size, and no callbacks: the hot path
 * (start, votes, decision, phase two) never touches Step Functions. It starts with Sleep: a new
 * group's supervisor is started with the first time anything of its group can be due (`wakeAt`, see
 * ensureSupervisor), so it makes no run at its start, when nothing can be due yet; a replacement is
 * started with a time in the past and runs at once. State names are a contract: tests and the
 * embedded local stack refer to them. JSONPath only (the local interpreter ignores JSONata).
 */
export class Workflow extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: WorkflowProps) {
    super(scope, id);
    const supervise = new tasks.LambdaInvoke(this, 'Supervise', {
      lambdaFunction: props.supervise,
      payload: sfn.TaskInput.fromJsonPathAt('$'),
      // The run's output is the execution's next state (group, gen, lastRunAt, runs, done, wakeAt).
      outputPath: '$.Payload',
      taskTimeout: sfn.Timeout.duration(Duration.seconds(60)),
      retryOnServiceExceptions: false,
    });
    supervise.addRetry({ errors: [...LAMBDA_ERRORS, 'States.TaskFailed', 'States.Timeout'], interval: Duration.seconds(2), backoffRate: 2, maxAttempts: 4, jitterStrategy: sfn.JitterType.FULL });
    // A state no run can read is a bug no retry fixes: the execution ends (failed, so alarms see it),
    // and the sweeper starts the group's next generation with a fresh state.
    supervise.addCatch(new sfn.Fail(this, 'Malformed', { error: 'SupervisorStateError', cause: 'the supervisor state could not be read' }), { errors: ['SupervisorStateError'] });
    // A run that keeps failing (a throttled table, say) is tried again after a pause, for ever: the
    // group's transactions still need their deadlines and phase two. The state is kept as it was.
    const backoff = new sfn.Wait(this, 'Backoff', { time: sfn.WaitTime.duration(Duration.seconds(30)) });
    supervise.addCatch(backoff, { errors: ['States.ALL'], resultPath: '$.error' });
    backoff.next(supervise);

    const sleep = new sfn.Wait(this, 'Sleep', { time: sfn.WaitTime.timestampPath('$.wakeAt') });
    sleep.next(supervise);
    const done = new sfn.Succeed(this, 'Done');
    supervise.next(new sfn.Choice(this, 'Route').when(sfn.Condition.booleanEquals('$.done', true), done).otherwise(sleep));

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(sleep),
      tracingEnabled: props.tracing ?? true,
      logs: {
        destination: new logs.LogGroup(this, 'Logs', {
          ...(props.logGroupName === undefined ? {} : { logGroupName: props.logGroupName }),
          retention: props.logRetentionDays ?? logs.RetentionDays.ONE_MONTH,
          removalPolicy: RemovalPolicy.DESTROY,
        }),
        level: sfn.LogLevel.ERROR,
      },
    });
    if (props.tracing === false) {
      Validations.of(this.stateMachine).acknowledge({
        id: 'AwsSolutions-SF2',
        reason: 'Tracing is switched off for this deployment by the `tracing` context (LocalStack community has no X-Ray); it follows the functions.',
      });
    }
  }
}
