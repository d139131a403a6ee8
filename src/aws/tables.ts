// Creating a table is not the end of it: DynamoDB (and dynalite, a moment later) answers while the
// table is still CREATING, and a write to it then fails with ResourceNotFoundException.
import { CreateTableCommand, type CreateTableCommandInput, type DynamoDBClient, waitUntilTableExists } from '@aws-sdk/client-dynamodb';

/** Wait until `TableName` is ACTIVE: at once if it is, else polling every 1-5 s for up to 2 minutes. */
export async function waitForTable(client: DynamoDBClient, TableName: string): Promise<void> {
  await waitUntilTableExists({ client, maxWaitTime: 120, minDelay: 1, maxDelay: 5 }, { TableName });
}

/** CreateTable, then wait until the table can be used. Errors (ResourceInUseException too) are the caller's. */
export async function createTableAndWait(client: DynamoDBClient, input: CreateTableCommandInput & { TableName: string }): Promise<void> {
  await client.send(new CreateTableCommand(input));
  await waitForTable(client, input.TableName);
}
