import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';

/**
 * A table whose loss loses transactions (the log, the lock table): on demand, point-in-time
 * recovery, encrypted, RETAIN, and a TTL attribute `expiresAt` that only ever collects garbage.
 * One place for that policy, so the stateful tables cannot drift apart.
 */
export function statefulTable(scope: Construct, partitionKey: string): dynamodb.Table {
  return new dynamodb.Table(scope, 'Table', {
    partitionKey: { name: partitionKey, type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    timeToLiveAttribute: 'expiresAt',
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    encryption: dynamodb.TableEncryption.AWS_MANAGED,
    removalPolicy: RemovalPolicy.RETAIN,
  });
}

/** The durable transaction log: one item per transaction (key `pk` = txId); see TxRecord. */
export class LogTable extends Construct {
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    // TTL (`expiresAt`) collects finished records only: Finalize sets it, open records never carry
    // it. RETAIN: the log holds the only record of decisions, and participants still in doubt ask
    // for them; deleting the stack must never delete the answers they depend on.
    this.table = statefulTable(this, 'pk');
    // Listing, most recent first: every record carries the constant `listPk`.
    this.table.addGlobalSecondaryIndex({
      indexName: 'byCreated',
      partitionKey: { name: 'listPk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'createdAt', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: ['txId', 'status', 'updatedAt', 'decision', 'decisionReason'],
    });
    // Sparse: Finalize removes `openPk`, so the recovery sweeper reads only transactions still open.
    this.table.addGlobalSecondaryIndex({
      indexName: 'open',
      partitionKey: { name: 'openPk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'updatedAt', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: ['txId', 'status', 'createdAt', 'prepareDeadlineAt'],
    });
  }
}
