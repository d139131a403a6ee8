import { Duration } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import { Construct } from 'constructs';
import type { Functions } from './functions';

export interface RecoveryProps {
  functions: Pick<Functions, 'addHandler'>;
  txTable: dynamodb.ITable;
  stateMachineArn: string;
  /** `arn:...:execution:<state machine>:*`: the sweeper describes the supervisors it finds. */
  executionArns: string;
  /** The sweeper's period on the embedded local stack, in seconds (`dtc:localRateSeconds`). */
  localRateSeconds: number;
}

/**
 * The recovery sweeper (lambdas/sweeper.ts) and its schedule: every minute (EventBridge's floor) it
 * gives every group with open transactions a running supervisor. Runs overlapping or twice are
 * safe: a same-name start of a running supervisor is a no-op, and a new generation is claimed first.
 */
export class Recovery extends Construct {
  readonly sweeper: nodejs.NodejsFunction;
  readonly schedule: events.Rule;

  constructor(scope: Construct, id: string, props: RecoveryProps) {
    super(scope, id);
    const { txTable } = props;
    // One run at a time (overlapping runs are safe, but only repeat the work), and no async retries: a
    // failed run is covered by the next one, a minute later.
    this.sweeper = props.functions.addHandler(this, 'sweeper', { reservedConcurrency: 1, retryAttempts: 0 });
    this.sweeper.addEnvironment('STATE_MACHINE_ARN', props.stateMachineArn);
    this.sweeper.addToRolePolicy(new iam.PolicyStatement({ actions: ['states:StartExecution'], resources: [props.stateMachineArn] }));
    this.sweeper.addToRolePolicy(new iam.PolicyStatement({ actions: ['states:DescribeExecution'], resources: [props.executionArns] }));
    const tableArn = txTable.tableArn;
    // GetItem/PutItem: a group's generation record (read, and the conditional claim of the next).
    this.sweeper.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:GetItem', 'dynamodb:PutItem'], resources: [tableArn] }));
    // Scan: the sparse open index, whose size is the number of open transactions.
    this.sweeper.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:Scan'], resources: [`${tableArn}/index/open`] }));

    this.schedule = new events.Rule(this, 'Schedule', {
      description: 'DTC recovery sweeper',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      // A missed run is covered by the next one: no retries that would pile runs up.
      targets: [new targets.LambdaFunction(this.sweeper, { retryAttempts: 0, maxEventAge: Duration.minutes(1) })],
    });
    (this.schedule.node.defaultChild as events.CfnRule).addMetadata('dtc:localRateSeconds', props.localRateSeconds);
  }
}
