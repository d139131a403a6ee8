// The lock service on the app's lock and log tables (test/support/aws.ts), and helpers to create
// transactions in a given state. Not a test file itself.
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { LockStore } from '../../src/aws/lock-store';
import { TxLog, documentClient } from '../../src/aws/log-store';
import { Coordinator } from '../../src/coordinator';
import type { ParticipantQueuesPort, WorkflowPort } from '../../src/core/ports';
import { DEFAULT_SUPERVISION, type TxStatus, newOps, newTransaction } from '../../src/core/transaction';
import { DeadlockDetector } from '../../src/locks/detector';
import { LockService, type LockServiceDeps } from '../../src/locks/service';
import { Transactions } from '../../src/locks/transactions';
import { type LocalAws, startLocalAws } from '../support/aws';
import { coordinatorConfig, pause } from '../support/fixtures';

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
  /** The commit decision as the reply path makes it: inventory's YES, then COMMIT (only from PREPARING). False if it lost. */
  decideCommit(txId: string): Promise<boolean>;
  /** A participant's own table (see LocalAws). */
  participantTable: LocalAws['participantTable'];
  stop(): Promise<void>;
}

let counter = 0;

/** Local DynamoDB with the app's lock and log tables (startLocalAws), and the helpers over them. */
export async function startLockEnv(): Promise<LockEnv> {
  const aws = await startLocalAws({ tables: ['locks', 'log'] });
  return { ...lockEnvOn(aws), stop: aws.stop };
}

/** The helpers over the lock and log tables of `aws` (started with `tables: ['locks', 'log']`). */
export function lockEnvOn(aws: Pick<LocalAws, 'dynamodb' | 'tables' | 'participantTable'>): LockEnv {
  const dynamodb = aws.dynamodb;
  const lockTable = aws.tables.locks;
  const txTable = aws.tables.log;
  const doc = documentClient(dynamodb);
  const store = new LockStore(doc, lockTable);
  const log = new TxLog(doc, txTable);
  // The coordinator's own abort (the conditional write, then phase two) on queues and a workflow that
  // go nowhere: these tests are about the locks and the log.
  const queues: ParticipantQueuesPort = { send: async () => undefined, deadLetter: async () => [], deadLetterReply: async () => undefined };
  const workflow: WorkflowPort = { start: async () => 'started', describe: async () => 'RUNNING' };
  const coordinator = new Coordinator({ config: coordinatorConfig(txTable, ['inventory']), log, queues, workflow });
  const transactions = new Transactions(log, coordinator);
  const detector = new DeadlockDetector({ store, transactions });
  return {
    dynamodb,
    participantTable: aws.participantTable,
    doc,
    store,
    log,
    transactions,
    detector,
    service: (deps = {}) => new LockService({ store, transactions, detect: () => detector.run('on-demand'), detectAfterMs: 300, ...deps }),
    async newTx(label = 'tx', prepareSeconds = 60) {
      // Distinct creation times, so "youngest" is well defined.
      await pause(2);
      const txId = `${label}-${String(++counter).padStart(6, '0')}`;
      const request = { participants: [{ service: 'inventory', operation: {} }], timeouts: { prepareSeconds, commitSeconds: 30 } };
      const nowMs = Date.now();
      const record = newTransaction({ txId, request, nowMs, requestHash: 'test', supervision: DEFAULT_SUPERVISION });
      if (!(await log.create(record, newOps(txId, request, nowMs, 30)))) throw new Error(`transaction ${txId} exists`);
      return txId;
    },
    async setStatus(txId, status) {
      await doc.send(
        new UpdateCommand({ TableName: txTable, Key: { pk: txId }, UpdateExpression: 'SET #s = :s', ExpressionAttributeNames: { '#s': 'status' }, ExpressionAttributeValues: { ':s': status } }),
      );
    },
    async decideCommit(txId) {
      const at = new Date().toISOString();
      await log.recordYes(txId, 'inventory', { vote: 'YES', at }, Date.now());
      const { applied } = await log.decideCommit(txId, at);
      return applied;
    },
    async stop() {
      // The caller owns the DynamoDB: nothing to stop here.
    },
  };
}
