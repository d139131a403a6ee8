// Child process for index-repair.test.ts: dynalite on disk with the app's log table (its sparse
// `open` index among others), and updates that move items between index keys as fast as it can,
// until the test kills it (SIGKILL). Prints `writing <table>` once it writes. Not a test file itself.
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { startLocalAws } from '../support/aws';

const dir = process.argv[2]!;
// On a restart the table is there already: the provisioner keeps it (and mends its indexes).
const aws = await startLocalAws({ dynamodb: { path: dir }, tables: ['log'] });
const table = aws.tables.log;
process.stdout.write(`writing ${table}\n`);
// Many writers at once: each update moves an item to a new index key, or out of the index.
let n = 0;
await Promise.all(
  Array.from({ length: 16 }, async (_, w) => {
    for (;;) {
      n++;
      const open = n % 3 !== 0;
      await aws.dynamodb.send(
        new PutItemCommand({
          TableName: table,
          Item: { pk: { S: `tx-${w}-${n % 7}` }, ...(open ? { og: { S: `g-${n % 5}` } } : {}), prepareDeadlineAt: { N: String(n) } },
        }),
      );
    }
  }),
);
