// Metrics and traces for the Lambda handlers (Powertools for AWS Lambda). Metrics are buffered per
// invocation and written as embedded metric format (EMF) to stdout when it ends; CloudWatch turns
// them into metrics. Traces go to X-Ray through the Lambda runtime's daemon.
import type { Context } from 'aws-lambda';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Tracer } from '@aws-lambda-powertools/tracer';
import { METRICS_NAMESPACE, METRICS_SERVICE, type MetricsPort } from '../metrics';

export const metrics = new Metrics({
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? METRICS_NAMESPACE,
  serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? METRICS_SERVICE,
});

export const metricsPort: MetricsPort = {
  count: (name, value = 1) => void metrics.addMetric(name, MetricUnit.Count, value),
  milliseconds: (name, value) => void metrics.addMetric(name, MetricUnit.Milliseconds, value),
};

/**
 * Tracing runs only inside Lambda and only when POWERTOOLS_TRACE_ENABLED is not "false". The
 * X-Ray SDK is imported only then: importing it turns on async hooks for the whole process, which
 * slows every await (measured 13x on a promise loop) and would tax the embedded local stack, which
 * runs every handler in one process, for traces nobody collects.
 */
export function tracingWanted(env: NodeJS.ProcessEnv): boolean {
  return Boolean(env.AWS_EXECUTION_ENV) && env.POWERTOOLS_TRACE_ENABLED?.toLowerCase() !== 'false';
}

export const tracer: Tracer | undefined = tracingWanted(process.env)
  ? new (await import('@aws-lambda-powertools/tracer')).Tracer({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? METRICS_SERVICE })
  : undefined;

/** An AWS SDK v3 client whose calls appear as X-Ray subsegments when tracing is on; unchanged otherwise. */
export function traced<T>(client: T): T {
  return tracer ? tracer.captureAWSv3Client(client) : client;
}

/** Work every invocation finishes with, before its metrics are written (decision events: src/aws/runtime.ts). */
const invocationEnd = new Set<() => Promise<void>>();
export function atInvocationEnd(flush: () => Promise<void>): void {
  invocationEnd.add(flush);
}

/**
 * Wrap a handler: one `## <name>` subsegment per invocation (cold start and service annotated,
 * errors attached), and the invocation's decision events and metrics flushed when it ends, thrown or not.
 */
export function withTelemetry<E, R>(name: string, handler: (event: E, context?: Context) => Promise<R>): (event: E, context?: Context) => Promise<R> {
  return async (event, context) => {
    const parent = tracer?.getSegment();
    const segment = parent?.addNewSubsegment(`## ${name}`);
    if (tracer && segment) {
      tracer.setSegment(segment);
      tracer.annotateColdStart();
      tracer.addServiceNameAnnotation();
    }
    try {
      return await handler(event, context);
    } catch (err) {
      segment?.addError(err as Error);
      throw err;
    } finally {
      // Never throws (decision events count and log their own failures); its counts join this invocation's metrics.
      for (const flush of invocationEnd) await flush();
      segment?.close();
      if (tracer && parent) tracer.setSegment(parent);
      // Publishing an empty buffer logs a warning; an invocation that recorded nothing (a batch
      // of duplicates, say) has nothing to say.
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    }
  };
}
