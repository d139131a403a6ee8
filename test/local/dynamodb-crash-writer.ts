// Child process for dynamodb-crash.test.ts: the embedded DynamoDB on disk, and as many writes as it
// can make until the test kills it (SIGKILL). On its first start it creates a table of accounts
// (with a secondary index over each account's `owner`) and funds them in one transaction. Then,
// at once: 16 writers transferring money between two random accounts with TransactWriteItems (each
// transfer also moves both accounts to a new index key), and 4 writers rewriting `marker` items
// with PutItem so that they move between index keys and in and out of the index. Prints
// `writing <n>` once the flood runs. Not a test file itself.
import { CreateTableCommand, DynamoDBClient, ResourceInUseException, TransactWriteItemsCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { startDynamo } from '../../src/local/dynamodb';

export const TABLE = 'crash-accounts';
export const INDEX = 'byOwner';
export const ACCOUNTS = 20;
export const BALANCE = 1000;

const dir = process.argv[2]!;
const dynamo = await startDynamo({ path: dir });
const client = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1 });

try {
  await client.send(
    new CreateTableCommand({
      TableName: TABLE,
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'owner', AttributeType: 'S' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
      GlobalSecondaryIndexes: [{ IndexName: INDEX, KeySchema: [{ AttributeName: 'owner', KeyType: 'HASH' }], Projection: { ProjectionType: 'ALL' } }],
    }),
  );
  // Funded all at once, or (killed before this lands) not at all: the test finds no accounts then.
  await client.send(
    new TransactWriteItemsCommand({
      TransactItems: Array.from({ length: ACCOUNTS }, (_, i) => ({
        Put: { TableName: TABLE, Item: { pk: { S: `acct-${i}` }, balance: { N: String(BALANCE) }, owner: { S: 'o-0' } } },
      })),
    }),
  );
} catch (err) {
  // A restart on the same data: the table and its accounts are there.
  if (!(err instanceof ResourceInUseException)) throw err;
}

let n = 0;
const transfer = async () => {
  const from = Math.floor(Math.random() * ACCOUNTS);
  const to = (from + 1 + Math.floor(Math.random() * (ACCOUNTS - 1))) % ACCOUNTS;
  const amount = String(1 + Math.floor(Math.random() * 50));
  const owner = { S: `o-${++n % 7}` };
  try {
    await client.send(
      new TransactWriteItemsCommand({
        TransactItems: [
          {
            Update: {
              TableName: TABLE,
              Key: { pk: { S: `acct-${from}` } },
              UpdateExpression: 'SET balance = balance - :n, #o = :o',
              ConditionExpression: 'balance >= :n',
              ExpressionAttributeNames: { '#o': 'owner' },
              ExpressionAttributeValues: { ':n': { N: amount }, ':o': owner },
            },
          },
          {
            Update: {
              TableName: TABLE,
              Key: { pk: { S: `acct-${to}` } },
              UpdateExpression: 'SET balance = balance + :n, #o = :o',
              ExpressionAttributeNames: { '#o': 'owner' },
              ExpressionAttributeValues: { ':n': { N: amount }, ':o': owner },
            },
          },
        ],
      }),
    );
  } catch (err) {
    // Canceled (a conflict, or too little money): nothing was written, try another.
    if ((err as Error).name !== 'TransactionCanceledException') throw err;
  }
};
const mark = async (w: number) => {
  const i = ++n;
  await client.send(new PutItemCommand({ TableName: TABLE, Item: { pk: { S: `marker-${w}-${i % 5}` }, ...(i % 3 ? { owner: { S: `m-${i % 4}` } } : {}) } }));
};

process.stdout.write(`writing ${ACCOUNTS}\n`);
await Promise.all([
  ...Array.from({ length: 16 }, async () => {
    for (;;) await transfer();
  }),
  ...Array.from({ length: 4 }, async (_, w) => {
    for (;;) await mark(w);
  }),
]);
