// The lock service and the deadlock detector, and how to build them from table names and clients.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SFNClient } from '@aws-sdk/client-sfn';
import { LockStore } from '../aws/lock-store';
import { TxLog, documentClient } from '../aws/log-store';
import { Workflow } from '../aws/workflow';
import { DeadlockDetector } from './detector';
import { LockService, type LockLogger } from './service';
import { Transactions } from './transactions';

export * from './service';
export * from './detector';
export * from './transactions';

export interface LockSetupOptions {
  lockTable: string;
  txTable: string;
  dynamodb?: DynamoDBClient;
  /** For waking a deadlock victim's execution; default: the SDK's client from the environment. */
  sfn?: SFNClient;
  /**
   * false: never call Step Functions (a participant without states:SendTaskSuccess). An aborted
   * transaction's execution then wakes when the victim's NO vote reaches the coordinator.
   */
  wakeExecutions?: boolean;
  detectAfterMs?: number;
  logger?: LockLogger;
}

export interface LockSetup {
  locks: LockService;
  detector: DeadlockDetector;
}

/**
 * A lock service whose long waits run the deadlock detector in this process: the same code path as
 * the scheduled detector Lambda. Needs read/write on the lock table, read and the decision write on
 * the log table, and states:SendTaskSuccess on the state machine (to wake a victim at once).
 */
export function createLocks(options: LockSetupOptions): LockSetup {
  const doc = documentClient(options.dynamodb ?? new DynamoDBClient({}));
  const store = new LockStore(doc, options.lockTable);
  const log = new TxLog(doc, options.txTable);
  const transactions = new Transactions(log, options.wakeExecutions === false ? undefined : new Workflow(options.sfn));
  const detector = new DeadlockDetector({ store, transactions, ...(options.logger ? { logger: options.logger } : {}) });
  const locks = new LockService({
    store,
    transactions,
    detect: () => detector.run('on-demand'),
    ...(options.detectAfterMs === undefined ? {} : { detectAfterMs: options.detectAfterMs }),
    ...(options.logger ? { logger: options.logger } : {}),
  });
  return { locks, detector };
}
