// Child process for index-repair.test.ts: dynalite on disk, and updates that move items between
// index keys as fast as it can, until the test kills it (SIGKILL). Not a test file itself.
import { DynamoDBClient, PutItemCommand, ResourceInUseException } from '@aws-sdk/client-dynamodb';
import { createTableAndWait } from '../../src/aws/tables';
import { startDynamo } from '../../src/local/dynamodb';

const dir = process.argv[2]!;
const dynamo = await startDynamo({ path: dir });
const client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
try {
  await createTableAndWait(client, {
    TableName: 'log',
    AttributeDefinitions: [
      { AttributeName: 'pk', AttributeType: 'S' },
      { AttributeName: 'openPk', AttributeType: 'S' },
      { AttributeName: 'updatedAt', AttributeType: 'S' },
    ],
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    BillingMode: 'PAY_PER_REQUEST',
    GlobalSecondaryIndexes: [
      {
        IndexName: 'open',
        KeySchema: [
          { AttributeName: 'openPk', KeyType: 'HASH' },
          { AttributeName: 'updatedAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'KEYS_ONLY' },
      },
    ],
  });
} catch (err) {
  if (!(err instanceof ResourceInUseException)) throw err;
}
process.stdout.write('writing\n');
// Many writers at once: each update moves an item to a new index key, or out of the index.
let n = 0;
await Promise.all(
  Array.from({ length: 16 }, async (_, w) => {
    for (;;) {
      n++;
      const open = n % 3 !== 0;
      await client.send(
        new PutItemCommand({
          TableName: 'log',
          Item: { pk: { S: `tx-${w}-${n % 7}` }, ...(open ? { openPk: { S: 'open' } } : {}), updatedAt: { S: String(n).padStart(12, '0') } },
        }),
      );
    }
  }),
);
