// The lock service on loopback DynamoDB (dynalite): a lock table shaped like cdk/locks.ts, a log
// table, and helpers to create transactions in a given state. Not a test file itself.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createTableAndWait } from '../../src/aws/tables';
import { type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { DEADLOCK_INDEX, LockStore, WAITING_INDEX } from '../../src/aws/lock-store';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { type TxStatus, newTransaction } from '../../src/core/transaction';
import { DeadlockDetector } from '../../src/locks/detector';
import { LockService, type LockServiceDeps } from '../../src/locks/service';
import { Transactions } from '../../src/locks/transactions';
import { startDynamo } from '../../src/local/dynamodb';

export interface LockEnv {
  dynamodb: DynamoDBClient;
  doc: DynamoDBDocumentClient;
  store: LockStore;
  log: TxLog;
  transactions: Transactions;
  detector: DeadlockDetector;
  /** A lock service on this env; long waits run the detector in process unless `detect` is overridden. */
  service(deps?: Partial<LockServiceDeps>): LockService;
  /** A PREPARING transaction created now (its createdAt orders victims: later is younger). */
  newTx(label?: string, prepareSeconds?: number): Promise<string>;
  setStatus(txId: string, status: TxStatus): Promise<void>;
  /** The commit decision as the state machine's Decide writes it: only from PREPARING. False if it lost. */
  decideCommit(txId: string): Promise<boolean>;
  stop(): Promise<void>;
}

let counter = 0;

export async function startLockEnv(): Promise<LockEnv> {
  const dynamo = await startDynamo();
  const dynamodb = new DynamoDBClient({ endpoint: dynamo.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  const env = await lockEnvOn(dynamodb, 'locks', 'log');
  return {
    ...env,
    async stop() {
      dynamodb.destroy();
      await dynamo.stop();
    },
  };
}

/** The lock and log tables on an existing DynamoDB (created here), and the helpers over them. */
export async function lockEnvOn(dynamodb: DynamoDBClient, lockTable: string, txTable: string): Promise<LockEnv> {
  await createTableAndWait(dynamodb, {
    TableName: lockTable,
    AttributeDefinitions: [
      { AttributeName: 'resource', AttributeType: 'S' },
      { AttributeName: 'waitPk', AttributeType: 'S' },
      { AttributeName: 'deadlockPk', AttributeType: 'S' },
      { AttributeName: 'createdAt', AttributeType: 'S' },
    ],
    KeySchema: [{ AttributeName: 'resource', KeyType: 'HASH' }],
    GlobalSecondaryIndexes: [
      {
        IndexName: WAITING_INDEX,
        KeySchema: [
          { AttributeName: 'waitPk', KeyType: 'HASH' },
          { AttributeName: 'resource', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
      {
        IndexName: DEADLOCK_INDEX,
        KeySchema: [
          { AttributeName: 'deadlockPk', KeyType: 'HASH' },
          { AttributeName: 'createdAt', KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
    ],
    BillingMode: 'PAY_PER_REQUEST',
  });
  await createTableAndWait(dynamodb, {
    TableName: txTable,
    AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
    KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
    BillingMode: 'PAY_PER_REQUEST',
  });
  const doc = documentClient(dynamodb);
  const store = new LockStore(doc, lockTable);
  const log = new TxLog(doc, txTable);
  const transactions = new Transactions(log);
  const detector = new DeadlockDetector({ store, transactions });
  return {
    dynamodb,
    doc,
    store,
    log,
    transactions,
    detector,
    service: (deps = {}) => new LockService({ store, transactions, detect: () => detector.run('on-demand'), detectAfterMs: 300, ...deps }),
    async newTx(label = 'tx', prepareSeconds = 60) {
      // Distinct creation times, so "youngest" is well defined.
      await new Promise((resolve) => setTimeout(resolve, 2));
      const txId = `${label}-${String(++counter).padStart(6, '0')}`;
      const record = newTransaction({
        txId,
        request: { participants: [{ service: 'inventory', operation: {} }], timeouts: { prepareSeconds, commitSeconds: 30 } },
        nowMs: Date.now(),
        requestHash: 'test',
      });
      if (!(await log.create(record))) throw new Error(`transaction ${txId} exists`);
      return txId;
    },
    async setStatus(txId, status) {
      await doc.send(
        new UpdateCommand({ TableName: txTable, Key: { pk: txId }, UpdateExpression: 'SET #s = :s', ExpressionAttributeNames: { '#s': 'status' }, ExpressionAttributeValues: { ':s': status } }),
      );
    },
    async decideCommit(txId) {
      const { applied } = await log.decide(txId, { status: 'COMMITTING', outcome: 'COMMIT', reason: 'decided by the test' }, new Date().toISOString());
      return applied;
    },
    async stop() {
      // The caller owns the DynamoDB: nothing to stop here.
    },
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
