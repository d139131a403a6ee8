import { Duration } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { Functions } from './functions';

export interface RecoveryProps {
  functions: Pick<Functions, 'addHandler'>;
  txTable: dynamodb.ITable;
  stateMachine: sfn.StateMachine;
  /** The sweeper's period on the embedded local stack, in seconds (`dtc:localRateSeconds`). */
  localRateSeconds: number;
}

/**
 * The recovery sweeper (lambdas/sweeper.ts) and its schedule: every minute (EventBridge's floor) it
 * resumes open transactions whose execution is gone. Runs overlapping or twice are safe: a recovery
 * execution starts only after a conditional claim on the log record.
 */
export class Recovery extends Construct {
  readonly sweeper: nodejs.NodejsFunction;
  readonly schedule: events.Rule;

  constructor(scope: Construct, id: string, props: RecoveryProps) {
    super(scope, id);
    const { txTable, stateMachine } = props;
    this.sweeper = props.functions.addHandler(this, 'sweeper');
    // The sweeper starts recovery executions; it is not referenced by the state machine: acyclic.
    this.sweeper.addEnvironment('STATE_MACHINE_ARN', stateMachine.stateMachineArn);
    stateMachine.grantStartExecution(this.sweeper);
    stateMachine.grantExecution(this.sweeper, 'states:DescribeExecution');
    const tableArn = txTable.tableArn;
    // GetItem: re-read before acting; UpdateItem: the abort decision and the recovery claim.
    this.sweeper.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'], resources: [tableArn] }));
    this.sweeper.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:Query'], resources: [`${tableArn}/index/open`] }));

    this.schedule = new events.Rule(this, 'Schedule', {
      description: 'DTC recovery sweeper',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      // A missed run is covered by the next one: no retries that would pile runs up.
      targets: [new targets.LambdaFunction(this.sweeper, { retryAttempts: 0, maxEventAge: Duration.minutes(1) })],
    });
    (this.schedule.node.defaultChild as events.CfnRule).addMetadata('dtc:localRateSeconds', props.localRateSeconds);
  }
}
