import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';

/**
 * A table whose loss loses transactions (the log, the lock table): on demand, point-in-time
 * recovery, encrypted, RETAIN and deletion protection, and a TTL attribute `expiresAt` that only ever collects garbage.
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
    // RETAIN keeps the table when the stack goes; this refuses a DeleteTable from anyone, console included.
    deletionProtection: true,
  });
}

/**
 * The durable transaction log: per transaction a small hot record (key `pk` = txId, see TxRecord)
 * and its operations, written once (`<txId>#ops`); idempotency claims (`idem#<key>`) and
 * supervisor generations (`grp#<group>`). Neither index has a constant partition key, and neither
 * is written by a vote or an acknowledgement: their keys are written once (at create), or at park
 * and finish, and they project keys only (a readable listing reads the records in one batch).
 */
export class LogTable extends Construct {
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    // TTL (`expiresAt`) only collects garbage: finishing sets it on a record (open records never
    // carry it); operations items, idempotency keys and group records carry one that outlives what
    // they belong to (docs/protocol.md, "Retention"). RETAIN: the log holds the only record of decisions, and participants still in doubt ask
    // for them; deleting the stack must never delete the answers they depend on.
    this.table = statefulTable(this, 'pk');
    // Listing, newest first: `lp` is one of LIST_SHARDS shards of the id, `createdAt` is written once.
    this.table.addGlobalSecondaryIndex({
      indexName: 'byCreated',
      partitionKey: { name: 'lp', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'createdAt', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.KEYS_ONLY,
    });
    // Sparse: supervision's groups. `og` (the group: creation bucket and shard, or a parked
    // participant) is removed when the transaction finishes; `prepareDeadlineAt` is written once.
    this.table.addGlobalSecondaryIndex({
      indexName: 'open',
      partitionKey: { name: 'og', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'prepareDeadlineAt', type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.KEYS_ONLY,
    });
  }
}
