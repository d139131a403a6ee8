import { Duration, Stack, Validations } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct, type IConstruct } from 'constructs';
import { METRIC, METRICS_NAMESPACE, METRICS_SERVICE, type MetricName } from '../src/metrics';
import type { DtcConfig } from './build';

export interface ObservabilityProps {
  config: Pick<DtcConfig, 'prefix' | 'abortRateAlarmPercent' | 'alarmTopicArn' | 'alarmEmail' | 'decisionEvents'>;
  /** Every function of the app: each gets an error alarm and a throttle alarm. */
  functions: lambda.IFunction[];
  stateMachine: sfn.IStateMachine;
  restApi: apigw.RestApi;
  /** The API's access log (JSON lines with `status` and `apiId`): throttled requests (429) are counted from it. */
  accessLogs: logs.ILogGroup;
  /** The recovery sweeper: it reports on every run, so silence means it stopped. */
  sweeper: lambda.IFunction;
  /** The stateful tables by a readable name; each, and each of its indexes, gets a throttling alarm. */
  tables: Readonly<Record<string, dynamodb.Table>>;
  /** Work queues by a readable name (a participant, `replies`); each one's DLQ must stay empty. */
  queues: Readonly<Record<string, sqs.Queue>>;
}

/** Alarm thresholds and windows, named so the docs and the tests can quote them. */
export const ALARMS = {
  /** A request queue whose oldest message waits this long has a participant that stopped consuming. */
  queueAgeSeconds: 300,
  /** The abort rate is judged over this window, and only with at least this many decisions in it. */
  abortRateWindow: Duration.minutes(15),
  abortRateMinDecisions: 10,
  /** In doubt for this many consecutive 5-minute sweeps: recovery is not catching up by itself. */
  inDoubtPeriods: 3,
  /** 5XX answers in 5 minutes before the API alarm fires: a few retried errors are expected. */
  api5xxPer5Minutes: 5,
  /** 4XX answers above this percentage of requests in 5 minutes, with at least api4xxMinRequests requests: a client or a deployment is broken. */
  api4xxPercent: 10,
  api4xxMinRequests: 50,
  /** Requests the API throttled (429) in 5 minutes before the alarm fires: the stage's or the account's limit binds. */
  api429Per5Minutes: 10,
  /** The sweeper runs every minute; this many 5-minute periods without a report is an alarm (missing data breaches). */
  sweeperSilentPeriods: 2,
} as const;

/** The metric the API's access log yields: requests answered 429 (namespace `Dtc`, dimension `apiId`). */
export const API_THROTTLED_METRIC = 'ApiThrottled';

/** The coordinator's own metric (namespace `Dtc`, dimension `service`), as Powertools writes it. */
export function dtcMetric(name: MetricName, options: cloudwatch.MetricOptions = {}): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRICS_NAMESPACE,
    metricName: name,
    dimensionsMap: { service: METRICS_SERVICE },
    period: Duration.minutes(1),
    statistic: cloudwatch.Stats.SUM,
    ...options,
  });
}

/**
 * The distinct dead-letter queues of `queues`, each with the queues that feed it; one fed by one queue
 * is named `<queue>-dlq`, a shared one after its construct (`replies-dlq`).
 */
function deadLetterQueues(queues: Readonly<Record<string, sqs.Queue>>): { name: string; dlq: sqs.IQueue; sources: string[] }[] {
  const byDlq = new Map<sqs.IQueue, string[]>();
  for (const [name, queue] of Object.entries(queues)) {
    const dlq = queue.deadLetterQueue?.queue;
    if (dlq) byDlq.set(dlq, [...(byDlq.get(dlq) ?? []), name]);
  }
  return [...byDlq].map(([dlq, sources]) => ({ name: sources.length === 1 ? `${sources[0]}-dlq` : dlq.node.id, dlq, sources }));
}

/** How many receives move a message of `sources` to their DLQ (the same for all of them). */
const MAX_RECEIVES = (queues: Readonly<Record<string, sqs.Queue>>, sources: string[]): number => queues[sources[0]!]!.deadLetterQueue!.maxReceiveCount;

/** Every Lambda function under `scope`, so functions added later to the stack get alarms too. */
export function functionsIn(scope: IConstruct): lambda.Function[] {
  return scope.node.findAll().filter((c): c is lambda.Function => c instanceof lambda.Function);
}

/** The names of a table's global secondary indexes, as the template declares them. */
function indexNames(table: dynamodb.Table): string[] {
  const declared = Stack.of(table).resolve((table.node.defaultChild as dynamodb.CfnTable).globalSecondaryIndexes) as { indexName: string }[] | undefined;
  return (declared ?? []).map((i) => i.indexName);
}

/**
 * Alarms on what needs a human (poison messages, stuck participants, transactions and participants
 * in doubt, an abort storm, failing or throttled functions, executions and tables, API errors and
 * throttling, a sweeper that stopped) and one dashboard; every alarm notifies one SNS topic (the
 * configured one, or `<prefix>-alarms`, which this creates). Missing data never alarms, except the
 * sweeper's: an idle coordinator is a healthy one, a silent sweeper is not.
 */
export class Observability extends Construct {
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;
  /** What every alarm notifies (ALARM and OK). */
  readonly topic: sns.ITopic;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const { config, stateMachine, restApi } = props;
    const topic = config.alarmTopicArn ? sns.Topic.fromTopicArn(this, 'AlarmTopic', config.alarmTopicArn) : this.createTopic(config);
    this.topic = topic;
    const alarm = (alarmId: string, description: string, options: Omit<cloudwatch.AlarmProps, 'alarmDescription' | 'alarmName'>) => {
      const created = new cloudwatch.Alarm(this, alarmId, {
        alarmName: `${config.prefix}-${alarmId}`,
        alarmDescription: description,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...options,
      });
      created.addAlarmAction(new actions.SnsAction(topic));
      created.addOkAction(new actions.SnsAction(topic));
      this.alarms.push(created);
      return created;
    };
    const oneOrMore = { threshold: 1, evaluationPeriods: 1, comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD };

    // One alarm per dead-letter queue: the participants' reply queues share one (named after it).
    for (const { name, dlq, sources } of deadLetterQueues(props.queues)) {
      alarm(`${name}-not-empty`, `A message to or from ${sources.join(', ')} failed ${MAX_RECEIVES(props.queues, sources)} times or was refused, and was moved to ${name}: look at it, fix the cause, redrive it.`, {
        metric: dlq.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1), statistic: cloudwatch.Stats.MAXIMUM }),
        ...oneOrMore,
      });
    }
    for (const [name, queue] of Object.entries(props.queues)) {
      alarm(`${name}-queue-stalled`, `The oldest message on ${name}'s queue has waited over ${ALARMS.queueAgeSeconds} s: its consumer is down or too slow.`, {
        metric: queue.metricApproximateAgeOfOldestMessage({ period: Duration.minutes(1), statistic: cloudwatch.Stats.MAXIMUM }),
        threshold: ALARMS.queueAgeSeconds,
        evaluationPeriods: 5,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      });
    }

    alarm('transactions-in-doubt', `Open transactions stayed stuck (the recovery sweeper's ${METRIC.TransactionsInDoubt}) for ${ALARMS.inDoubtPeriods} consecutive 5-minute periods.`, {
      metric: dtcMetric(METRIC.TransactionsInDoubt, { period: Duration.minutes(5), statistic: cloudwatch.Stats.MAXIMUM }),
      threshold: 1,
      evaluationPeriods: ALARMS.inDoubtPeriods,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    });

    const abortRate = new cloudwatch.MathExpression({
      expression: `IF((c + a) >= ${ALARMS.abortRateMinDecisions}, 100 * a / (c + a), 0)`,
      usingMetrics: {
        c: dtcMetric(METRIC.TransactionsCommitted, { period: ALARMS.abortRateWindow }),
        a: dtcMetric(METRIC.TransactionsAborted, { period: ALARMS.abortRateWindow }),
      },
      period: ALARMS.abortRateWindow,
      label: 'Abort rate (%)',
    });
    alarm('abort-rate', `More than ${config.abortRateAlarmPercent}% of decisions in ${ALARMS.abortRateWindow.toMinutes()} minutes were ABORT (with at least ${ALARMS.abortRateMinDecisions} decisions).`, {
      metric: abortRate,
      threshold: config.abortRateAlarmPercent,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    });

    for (const fn of props.functions) {
      const name = fn.node.id;
      alarm(`${name}-errors`, `The ${name} function failed (an error it did not map); see its log group.`, {
        metric: fn.metricErrors({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
        ...oneOrMore,
      });
    }

    const failedExecutions = new cloudwatch.MathExpression({
      expression: 'failed + timedOut',
      usingMetrics: {
        failed: stateMachine.metricFailed({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
        timedOut: stateMachine.metricTimedOut({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
      },
      period: Duration.minutes(5),
      label: 'Failed or timed-out executions',
    });
    alarm('executions-failed', 'A group supervisor\'s execution failed or timed out; the sweeper starts the group a new one, but the cause is a bug or a broken dependency.', {
      metric: failedExecutions,
      ...oneOrMore,
    });

    alarm('api-5xx', `The API answered 5XX at least ${ALARMS.api5xxPer5Minutes} times in 5 minutes.`, {
      metric: restApi.metricServerError({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
      threshold: ALARMS.api5xxPer5Minutes,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    });

    this.throttlingAlarms(props, alarm, oneOrMore);

    alarm('participants-in-doubt', `Supervision marked participants in doubt (${METRIC.ParticipantsInDoubt}): each owes an acknowledgement of a decision sent for ${'several'} commit timeouts; its request DLQ holds a copy. See docs/operations.md.`, {
      metric: dtcMetric(METRIC.ParticipantsInDoubt, { period: Duration.minutes(5) }),
      ...oneOrMore,
    });
    // The sweeper reports its gauge on every run (0 included): no report in 10 minutes means it stopped.
    alarm('sweeper-not-running', `The recovery sweeper reported no run (${METRIC.TransactionsInDoubt}) for ${ALARMS.sweeperSilentPeriods} periods of 5 minutes: groups whose supervisor died get none. See the ${props.sweeper.node.id} function's errors, throttles and schedule.`, {
      metric: dtcMetric(METRIC.TransactionsInDoubt, { period: Duration.minutes(5), statistic: cloudwatch.Stats.SAMPLE_COUNT }),
      threshold: 1,
      evaluationPeriods: ALARMS.sweeperSilentPeriods,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    if (config.decisionEvents) {
      alarm('decision-events-failed', `Decision events were not published (${METRIC.DecisionEventsFailed}): subscribers missed them. The decisions stand; see the deciders' logs ("decision events").`, {
        metric: dtcMetric(METRIC.DecisionEventsFailed, { period: Duration.minutes(5) }),
        ...oneOrMore,
      });
    }

    this.dashboard = this.buildDashboard(props, abortRate, failedExecutions);
  }

  /** `<prefix>-alarms`, encrypted in transit only (see the cdk-nag acknowledgement), with an optional email subscription. */
  private createTopic(config: ObservabilityProps['config']): sns.ITopic {
    const topic = new sns.Topic(this, 'AlarmTopic', { topicName: `${config.prefix}-alarms`, displayName: `DTC ${config.prefix} alarms`, enforceSSL: true });
    if (config.alarmEmail) topic.addSubscription(new subscriptions.EmailSubscription(config.alarmEmail));
    Validations.of(topic).acknowledge({
      id: 'AwsSolutions-SNS2',
      reason:
        "Alarm notifications carry alarm names and states, no business data; CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key, and a customer-managed key would cost more than what it protects.",
    });
    return topic;
  }

  /** Throttling anywhere on the path: functions, executions, tables and their indexes, the API. */
  private throttlingAlarms(
    props: ObservabilityProps,
    alarm: (id: string, description: string, options: Omit<cloudwatch.AlarmProps, 'alarmDescription' | 'alarmName'>) => cloudwatch.Alarm,
    oneOrMore: Pick<cloudwatch.AlarmProps, 'threshold' | 'evaluationPeriods' | 'comparisonOperator'>,
  ): void {
    const fiveMinutes = { period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM };
    for (const fn of props.functions) {
      const name = fn.node.id;
      alarm(`${name}-throttles`, `Invocations of ${name} were throttled: its reserved concurrency or the account's concurrency is used up (docs/operations.md, quotas).`, {
        metric: fn.metricThrottles(fiveMinutes),
        ...oneOrMore,
      });
    }
    alarm('executions-throttled', 'Step Functions throttled the supervisor state machine (ExecutionThrottled): StartExecution or state transitions are over quota (docs/operations.md, quotas).', {
      metric: props.stateMachine.metric('ExecutionThrottled', fiveMinutes),
      ...oneOrMore,
    });
    for (const [tableName, table] of Object.entries(props.tables)) {
      const throttled = (dimensions: Record<string, string>) =>
        new cloudwatch.MathExpression({
          expression: 'r + w',
          usingMetrics: Object.fromEntries(
            (['r', 'w'] as const).map((k) => [k, new cloudwatch.Metric({ namespace: 'AWS/DynamoDB', metricName: k === 'r' ? 'ReadThrottleEvents' : 'WriteThrottleEvents', dimensionsMap: dimensions, ...fiveMinutes })]),
          ),
          period: Duration.minutes(5),
          label: 'Throttled reads + writes',
        });
      alarm(`${tableName}-table-throttled`, `DynamoDB throttled reads or writes on the ${tableName} table: its on-demand maximum or a partition's 1,000 WRU/s binds (docs/operations.md, quotas).`, {
        metric: throttled({ TableName: table.tableName }),
        ...oneOrMore,
      });
      for (const index of indexNames(table)) {
        alarm(`${tableName}-${index}-index-throttled`, `DynamoDB throttled the ${tableName} table's ${index} index; an index that cannot keep up throttles the table's writes too.`, {
          metric: throttled({ TableName: table.tableName, GlobalSecondaryIndexName: index }),
          ...oneOrMore,
        });
      }
    }

    const requests = props.restApi.metricCount(fiveMinutes);
    alarm('api-4xx-rate', `More than ${ALARMS.api4xxPercent}% of API requests in 5 minutes were answered 4XX (with at least ${ALARMS.api4xxMinRequests} requests): a client, a signer or a deployment is broken.`, {
      metric: new cloudwatch.MathExpression({
        expression: `IF(n >= ${ALARMS.api4xxMinRequests}, 100 * e / n, 0)`,
        usingMetrics: { n: requests, e: props.restApi.metricClientError(fiveMinutes) },
        period: Duration.minutes(5),
        label: '4XX (%)',
      }),
      threshold: ALARMS.api4xxPercent,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    });
    // API Gateway (REST) has no 429 metric of its own: the access log has every status.
    const throttledRequests = new logs.MetricFilter(this, 'ApiThrottledFilter', {
      logGroup: props.accessLogs,
      filterPattern: logs.FilterPattern.stringValue('$.status', '=', '429'),
      metricNamespace: METRICS_NAMESPACE,
      metricName: API_THROTTLED_METRIC,
      metricValue: '1',
      dimensions: { apiId: '$.apiId' },
      unit: cloudwatch.Unit.COUNT,
    });
    alarm('api-429', `The API answered 429 (throttled) at least ${ALARMS.api429Per5Minutes} times in 5 minutes: the stage's, the start route's or the account's request limit binds (docs/performance.md, defaults).`, {
      metric: throttledRequests.metric({ ...fiveMinutes, dimensionsMap: { apiId: props.restApi.restApiId } }),
      threshold: ALARMS.api429Per5Minutes,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    });
  }

  private buildDashboard(props: ObservabilityProps, abortRate: cloudwatch.IMetric, failedExecutions: cloudwatch.IMetric): cloudwatch.Dashboard {
    const { config, functions, stateMachine, restApi, queues } = props;
    const width = 8;
    const graph = (title: string, left: cloudwatch.IMetric[], right: cloudwatch.IMetric[] = []) =>
      new cloudwatch.GraphWidget({ title, left, right, width, height: 6 });
    const dlqs = deadLetterQueues(queues).map(({ name, dlq }) => dlq.metricApproximateNumberOfMessagesVisible({ label: name, statistic: cloudwatch.Stats.MAXIMUM }));
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: `${config.prefix}-coordinator`,
      defaultInterval: Duration.hours(3),
    });
    dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 4 }),
    );
    dashboard.addWidgets(
      graph('Transactions', [METRIC.TransactionsStarted, METRIC.TransactionsCommitted, METRIC.TransactionsAborted].map((m) => dtcMetric(m))),
      graph('Decision latency (ms)', ['p50', 'p90', 'p99'].map((p) => dtcMetric(METRIC.DecisionLatency, { statistic: p, label: p }))),
      graph(
        'In doubt, abort rate',
        [
          dtcMetric(METRIC.TransactionsInDoubt, { statistic: cloudwatch.Stats.MAXIMUM, period: Duration.minutes(5) }),
          dtcMetric(METRIC.ParticipantsInDoubt, { period: Duration.minutes(5) }),
        ],
        [abortRate],
      ),
    );
    dashboard.addWidgets(
      graph('Votes, acks, messages sent', [METRIC.VotesRecorded, METRIC.AcksRecorded, METRIC.MessagesSent].map((m) => dtcMetric(m)), [
        dtcMetric(METRIC.RepliesRefused),
        dtcMetric(METRIC.SupervisorStartFailures),
      ]),
      graph('Executions', [stateMachine.metricStarted({ statistic: cloudwatch.Stats.SUM }), stateMachine.metricSucceeded({ statistic: cloudwatch.Stats.SUM })], [failedExecutions]),
      graph('Execution time p99 (ms)', [stateMachine.metricTime({ statistic: 'p99' })]),
    );
    dashboard.addWidgets(
      graph('Function errors and throttles', functions.flatMap((fn) => [
        fn.metricErrors({ label: `${fn.node.id} errors`, statistic: cloudwatch.Stats.SUM }),
        fn.metricThrottles({ label: `${fn.node.id} throttles`, statistic: cloudwatch.Stats.SUM }),
      ])),
      graph('Function duration p99 (ms)', functions.map((fn) => fn.metricDuration({ label: fn.node.id, statistic: 'p99' }))),
      graph('Function invocations', functions.map((fn) => fn.metricInvocations({ label: fn.node.id, statistic: cloudwatch.Stats.SUM }))),
    );
    dashboard.addWidgets(
      graph('Queue depth', Object.entries(queues).map(([name, q]) => q.metricApproximateNumberOfMessagesVisible({ label: name, statistic: cloudwatch.Stats.MAXIMUM }))),
      graph('Oldest message age (s)', Object.entries(queues).map(([name, q]) => q.metricApproximateAgeOfOldestMessage({ label: name, statistic: cloudwatch.Stats.MAXIMUM }))),
      graph('Dead-letter queues', dlqs),
    );
    dashboard.addWidgets(
      graph('API requests and errors', [restApi.metricCount({ statistic: cloudwatch.Stats.SUM })], [
        restApi.metricClientError({ statistic: cloudwatch.Stats.SUM }),
        restApi.metricServerError({ statistic: cloudwatch.Stats.SUM }),
      ]),
      graph('API latency (ms)', ['p50', 'p99'].map((p) => restApi.metricLatency({ statistic: p, label: p }))),
      graph('Decision events', [METRIC.DecisionEventsPublished, METRIC.DecisionEventsFailed].map((m) => dtcMetric(m))),
    );
    return dashboard;
  }
}
