import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';

/** The durable transaction log: one item per transaction (key `pk` = txId); see TxRecord. */
export class LogTable extends Construct {
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      // Garbage collection of finished records only: Finalize sets it, open records never carry it.
      timeToLiveAttribute: 'expiresAt',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      // The log holds the only record of decisions; participants still in doubt ask for them.
      // Deleting the stack must never delete the answers they depend on.
      removalPolicy: RemovalPolicy.RETAIN,
    });
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
