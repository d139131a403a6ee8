import { Duration } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import { Construct } from 'constructs';
import type { Functions } from './functions';
import { statefulTable } from './log-table';

/**
 * The lock table: one item per resource (key `resource`) with its owners, fencing token and waiters;
 * see src/aws/lock-store.ts. Also the release index (`held#...`) and deadlock records (`deadlock#...`).
 */
export class LockTable extends Construct {
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    // TTL (`expiresAt`) is garbage collection only: set on idle locks, release indexes and deadlock
    // records, never on a lock that is held or waited for. Leases, not TTL, decide when a lock may be
    // taken over. RETAIN: the table holds the locks of transactions in flight and the fencing tokens
    // their data has seen; losing it would let a new grant reuse a token.
    this.table = statefulTable(this, 'resource');
    // Sparse: only items with waiters carry `waitPk` (one of a few shards, so no index partition runs
    // hot). The detector reads the wait-for edges from here instead of scanning every lock. The
    // sort key gives pages a total order (dynalite loses an item between pages without one).
    this.table.addGlobalSecondaryIndex({
      indexName: 'waiting',
      partitionKey: { name: 'waitPk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'resource', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
    // Sparse: deadlock records only, newest first for GET /deadlocks.
    this.table.addGlobalSecondaryIndex({
      indexName: 'deadlocks',
      partitionKey: { name: 'deadlockPk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'createdAt', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
  }
}

export interface DeadlocksProps {
  functions: Pick<Functions, 'addHandler'>;
  txTable: dynamodb.ITable;
  lockTable: dynamodb.ITable;
  /** The participants' request queues: the detector sends a victim's ABORTs itself. */
  participantQueueArns: string[];
}

/** Context key: the detector's period on the embedded local stack, in seconds (default 1). */
export const DETECTOR_LOCAL_RATE_CONTEXT = 'detectorLocalRateSeconds';

/**
 * The deadlock detector (lambdas/detector.ts) and its schedule: every minute (EventBridge's floor).
 * Long waits also run the same code on demand, so the schedule is the backstop, and the prepare
 * timeout the last resort.
 */
export class Deadlocks extends Construct {
  readonly detector: nodejs.NodejsFunction;
  readonly schedule: events.Rule;

  constructor(scope: Construct, id: string, props: DeadlocksProps) {
    super(scope, id);
    const localRate = this.node.tryGetContext(DETECTOR_LOCAL_RATE_CONTEXT) ?? 1;
    if (typeof localRate !== 'number' || !(localRate > 0) || localRate > 3600) {
      throw new Error(`context '${DETECTOR_LOCAL_RATE_CONTEXT}' must be a number of seconds in (0, 3600], got ${JSON.stringify(localRate)}`);
    }
    // One scheduled run at a time, no async retries: a failed run is covered by the next (long waits
    // also detect in process, in the api function).
    this.detector = props.functions.addHandler(this, 'detector', { reservedConcurrency: 1, retryAttempts: 0 });
    const lockArn = props.lockTable.tableArn;
    // Query: the waiting index (the wait-for edges); GetItem: re-read a cycle's locks before acting;
    // PutItem: the deadlock record.
    this.detector.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:Query'], resources: [`${lockArn}/index/waiting`] }));
    // UpdateItem: a victim that needs no acknowledgement finishes at once, releasing its coordinator-held locks.
    this.detector.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'], resources: [lockArn] }));
    // GetItem: the members' age and status; UpdateItem: the conditional abort decision (and, when
    // the victim needs no acknowledgement, finishing it).
    this.detector.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'], resources: [props.txTable.tableArn] }));
    // Whoever decides sends phase two: the victim's ABORTs go straight to its participants' queues.
    this.detector.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: props.participantQueueArns }));

    this.schedule = new events.Rule(this, 'Schedule', {
      description: 'DTC deadlock detector',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      // A run that finds nothing costs a few queries; a missed one is covered by the next.
      targets: [new targets.LambdaFunction(this.detector, { retryAttempts: 0, maxEventAge: Duration.minutes(1) })],
    });
    // The embedded local stack runs schedules as timers at this period (a test cannot wait minutes).
    (this.schedule.node.defaultChild as events.CfnRule).addMetadata('dtc:localRateSeconds', localRate);
  }
}
