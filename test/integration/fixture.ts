// What the coordinator's integration tests share: the log table on dynalite, and the coordinator's
// configuration with recorded queues and workflow standing in for SQS and Step Functions. Not a test file.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { TxLog, documentClient } from '../../src/aws/log-store';
import type { CoordinatorConfig } from '../../src/aws/config';
import { createTableAndWait } from '../../src/aws/tables';
import { startDynamo } from '../../src/local/dynamodb';

export interface LogFixture {
  client: DynamoDBClient;
  log: TxLog;
  stop(): Promise<void>;
}

/** dynalite in memory with the log table `log` and its indexes (`byCreated` for listing, `open` for the sweeper). */
export async function startLogTable(): Promise<LogFixture> {
  const dynamo = await startDynamo();
  const client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  await createTableAndWait(client, {
    TableName: 'log',
    AttributeDefinitions: [
      { AttributeName: 'pk', AttributeType: 'S' },
      { AttributeName: 'listPk', AttributeType: 'S' },
      { AttributeName: 'createdAt', AttributeType: 'S' },
      { AttributeName: 'openPk', AttributeType: 'S' },
      { AttributeName: 'updatedAt', AttributeType: 'S' },
    ],
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    GlobalSecondaryIndexes: [
      {
        IndexName: 'byCreated',
        KeySchema: [
          { AttributeName: 'listPk', KeyType: 'HASH' },
          { AttributeName: 'createdAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
      {
        IndexName: 'open',
        KeySchema: [
          { AttributeName: 'openPk', KeyType: 'HASH' },
          { AttributeName: 'updatedAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
    ],
    BillingMode: 'PAY_PER_REQUEST',
  });
  return {
    client,
    log: new TxLog(documentClient(client), 'log'),
    async stop() {
      client.destroy();
      await dynamo.stop();
    },
  };
}

/** The configuration of a coordinator for `services`, with the deployment's default timeouts. */
export function coordinatorConfig(services: readonly string[]): CoordinatorConfig {
  return {
    txTable: 'log',
    replyQueueUrl: 'reply',
    participantQueues: Object.fromEntries(services.map((s) => [s, `q-${s}`])),
    stateMachineArn: 'arn:sm',
    retentionDays: 30,
    defaults: { prepareSeconds: 10, commitSeconds: 30 },
  };
}
