// The coordinator's business metrics: one list of names shared by the code that emits them (through
// the port below) and the alarms and dashboard that read them (cdk/observability.ts), so the two
// cannot drift. On AWS they are CloudWatch metrics in namespace `Dtc` with one dimension
// `service` = POWERTOOLS_SERVICE_NAME, written as embedded metric format by Powertools.

export const METRICS_NAMESPACE = 'Dtc';
/** Powertools adds the `service` dimension to every metric; alarms must name it too. */
export const METRICS_SERVICE = 'dtc';

export const METRIC = {
  /** A new transaction record was written (an idempotent replay is not counted). */
  TransactionsStarted: 'TransactionsStarted',
  /** The decision COMMIT was written: once per transaction, by whoever decided. */
  TransactionsCommitted: 'TransactionsCommitted',
  /** The decision ABORT was written: once per transaction, by whoever decided. */
  TransactionsAborted: 'TransactionsAborted',
  /** Creation to decision, in milliseconds, emitted with the two counts above. */
  DecisionLatency: 'DecisionLatency',
  /** A vote was recorded (a duplicate is not). */
  VotesRecorded: 'VotesRecorded',
  /** An acknowledgement was recorded (a duplicate is not). */
  AcksRecorded: 'AcksRecorded',
  /** PREPARE/COMMIT/ABORT messages sent to participants: each is a billable SQS request. */
  MessagesSent: 'MessagesSent',
  /**
   * Emitted by the recovery sweeper on every run: open transactions more than STUCK_AFTER_MS (5 min)
   * past their prepare deadline, so decided and still owed an acknowledgement (a gauge, 0 included,
   * so a missing datapoint means the sweeper did not run).
   */
  TransactionsInDoubt: 'TransactionsInDoubt',
  /** A group's supervisor could not be started at a transaction's start (the sweeper starts it later). */
  SupervisorStartFailures: 'SupervisorStartFailures',
  /** Replies refused and dead-lettered: malformed, or naming a participant other than the queue's owner. */
  RepliesRefused: 'RepliesRefused',
  /** Participants phase two first found in doubt (IN_DOUBT_AFTER_COMMIT_TIMEOUTS commit timeouts, no ACK): once per participant and transaction. */
  ParticipantsInDoubt: 'ParticipantsInDoubt',
  /** Decision events EventBridge accepted (docs/events.md). */
  DecisionEventsPublished: 'DecisionEventsPublished',
  /** Decision events not published: PutEvents refused them or failed, or too many waited in one invocation. */
  DecisionEventsFailed: 'DecisionEventsFailed',
} as const;

export type MetricName = (typeof METRIC)[keyof typeof METRIC];

/** The port the coordinator emits through; the Lambda runtime binds it to Powertools Metrics. */
export interface MetricsPort {
  count(name: MetricName, value?: number): void;
  milliseconds(name: MetricName, value: number): void;
}

export const noMetrics: MetricsPort = {
  count: () => undefined,
  milliseconds: () => undefined,
};
