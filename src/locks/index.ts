// The lock service and the deadlock detector, and how to build them from table names and clients.
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { LockStore } from '../aws/lock-store';
import { documentClient } from '../aws/log-store';
import { DeadlockDetector } from './detector';
import { LockService, type LockLogger } from './service';
import type { TransactionPort } from './transactions';

export * from './service';
export * from './detector';
export * from './transactions';

export interface LockSetupOptions {
  lockTable: string;
  /** How the service learns a transaction's status and aborts one: the coordinator's own, or the API's. */
  transactions: TransactionPort;
  dynamodb?: DynamoDBClient;
  detectAfterMs?: number;
  logger?: LockLogger;
}

export interface LockSetup {
  locks: LockService;
  detector: DeadlockDetector;
}

/**
 * A lock service whose long waits run the deadlock detector in this process: the same code path as
 * the scheduled detector Lambda. Needs read/write on the lock table, and the transactions' port.
 */
export function createLocks(options: LockSetupOptions): LockSetup {
  const doc = documentClient(options.dynamodb ?? new DynamoDBClient({}));
  const store = new LockStore(doc, options.lockTable);
  const { transactions } = options;
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
