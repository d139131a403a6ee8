import { Duration } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct, type IConstruct } from 'constructs';
import { METRIC, METRICS_NAMESPACE, METRICS_SERVICE, type MetricName } from '../src/metrics';
import type { DtcConfig } from './build';

export interface ObservabilityProps {
  config: Pick<DtcConfig, 'prefix' | 'abortRateAlarmPercent' | 'alarmTopicArn'>;
  /** Every function of the app: each gets an error alarm. */
  functions: lambda.IFunction[];
  stateMachine: sfn.IStateMachine;
  restApi: apigw.RestApi;
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
} as const;

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

/**
 * Alarms on what needs a human (poison messages, stuck participants, transactions in doubt,
 * an abort storm, failing functions or executions, API errors) and one dashboard.
 * Missing data never alarms: an idle coordinator is a healthy one.
 */
export class Observability extends Construct {
  readonly alarms: cloudwatch.Alarm[] = [];
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const { config, stateMachine, restApi } = props;
    const topic = config.alarmTopicArn ? sns.Topic.fromTopicArn(this, 'AlarmTopic', config.alarmTopicArn) : undefined;
    const alarm = (alarmId: string, description: string, options: Omit<cloudwatch.AlarmProps, 'alarmDescription' | 'alarmName'>) => {
      const created = new cloudwatch.Alarm(this, alarmId, {
        alarmName: `${config.prefix}-${alarmId}`,
        alarmDescription: description,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...options,
      });
      if (topic) {
        created.addAlarmAction(new actions.SnsAction(topic));
        created.addOkAction(new actions.SnsAction(topic));
      }
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

    this.dashboard = this.buildDashboard(props, abortRate, failedExecutions);
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
    );
    return dashboard;
  }
}
