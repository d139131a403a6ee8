// Counts what the embedded stack serves, as AWS would bill it, so a benchmark reports billable use
// per transaction as measured, not as estimated:
// - requests by service, operation and resource (table or queue), counted in billable requests
//   (an SQS request is one per 64 KB chunk of payload; see sqs-worker.mjs);
// - DynamoDB write and read request units per table, per index and per partition key value, charged
//   by the embedded DynamoDB itself from the items before and after each write (dynamodb-worker.mjs);
// - Lambda invocations, billed milliseconds and log bytes per function (lambda.ts);
// - API Gateway requests per route (apigateway.ts) and events published.
// `reading()` copies everything, for diffing before/after a run.

export interface DynamoUnitsRow {
  table: string;
  /** '' for the base table. */
  index: string;
  /** The partition key value; '' for the table's (or index's) total. */
  key: string;
  writeUnits: number;
  readUnits: number;
}

export interface LambdaRow {
  fn: string;
  invocations: number;
  /** Duration as Lambda bills it: each invocation rounded up to the next millisecond. */
  billedMs: number;
  /** Bytes the handler wrote to stdout/stderr (what CloudWatch Logs ingests from it). */
  logBytes: number;
  /** Bytes of the START/END/REPORT lines Lambda itself adds per invocation. */
  platformLogBytes: number;
}

export interface MeterReading {
  requests: { service: string; operation: string; resource: string; count: number }[];
  dynamodb: DynamoUnitsRow[];
  lambda: LambdaRow[];
  eventsPublished: number;
}

/** A charge as the embedded DynamoDB posts it: [table, index ('' base), partition key value ('' unknown), writeUnits, readUnits]. */
export type DynamoCharge = [table: string, index: string, key: string, writeUnits: number, readUnits: number];

const SEP = '\u0000';

export class Meter {
  private readonly counts = new Map<string, number>();
  private readonly dynamo = new Map<string, DynamoUnitsRow>();
  private readonly lambdas = new Map<string, LambdaRow>();
  private events = 0;
  /**
   * Count DynamoDB units per partition key value too (one row per key ever written: opt-in, so a
   * long `npm start` session does not grow without bound; the benchmark turns it on).
   */
  countKeys = false;

  count(service: string, operation: string, resource: string | undefined, requests = 1): void {
    const key = `${service}|${operation}|${resource ?? ''}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + requests);
  }

  /** Rows of { service, operation, resource, count }, for diffing before/after a run. */
  snapshot(): { service: string; operation: string; resource: string; count: number }[] {
    return [...this.counts].map(([key, count]) => {
      const [service, operation, resource] = key.split('|') as [string, string, string];
      return { service, operation, resource, count };
    });
  }

  /** Units the embedded DynamoDB charged: added to the table's (or index's) total and to its key's. */
  chargeDynamo(charges: readonly DynamoCharge[]): void {
    for (const [table, index, key, writeUnits, readUnits] of charges) {
      this.addUnits(table, index, '', writeUnits, readUnits);
      if (key && this.countKeys) this.addUnits(table, index, key, writeUnits, readUnits);
    }
  }

  lambdaInvocation(fn: string, billedMs: number, platformLogBytes: number): void {
    const row = this.lambdaRow(fn);
    row.invocations++;
    row.billedMs += billedMs;
    row.platformLogBytes += platformLogBytes;
  }

  lambdaLog(fn: string, bytes: number): void {
    this.lambdaRow(fn).logBytes += bytes;
  }

  eventsPublished(entries: number): void {
    this.events += entries;
  }

  reading(): MeterReading {
    return {
      requests: this.snapshot(),
      dynamodb: [...this.dynamo.values()].map((r) => ({ ...r })),
      lambda: [...this.lambdas.values()].map((r) => ({ ...r })),
      eventsPublished: this.events,
    };
  }

  private addUnits(table: string, index: string, key: string, writeUnits: number, readUnits: number): void {
    const id = [table, index, key].join(SEP);
    let row = this.dynamo.get(id);
    if (!row) this.dynamo.set(id, (row = { table, index, key, writeUnits: 0, readUnits: 0 }));
    row.writeUnits += writeUnits;
    row.readUnits += readUnits;
  }

  private lambdaRow(fn: string): LambdaRow {
    let row = this.lambdas.get(fn);
    if (!row) this.lambdas.set(fn, (row = { fn, invocations: 0, billedMs: 0, logBytes: 0, platformLogBytes: 0 }));
    return row;
  }
}
