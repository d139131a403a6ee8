// Builds the CDK app in process: the CLI entry (app.ts), the template tests and the embedded local
// stack all go through here, so the template they see is the one `cdk deploy` would deploy.
import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { CoordinatorStack } from './coordinator-stack';
import { DataStack } from './data-stack';

const NAME = /^[a-z][a-z0-9-]{0,39}$/;
const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'CRITICAL', 'SILENT'] as const;

export interface DtcConfig {
  /** Physical-name prefix of the queues (participants find their queue by name). */
  prefix: string;
  participants: string[];
  defaultPrepareSeconds: number;
  defaultCommitSeconds: number;
  retentionDays: number;
  logLevel: (typeof LOG_LEVELS)[number];
}

/** The `context` object of cdk.json, with `overrides` laid over it. */
export function loadCdkContext(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(new URL('../cdk.json', import.meta.url), 'utf8')) as {
    context?: Record<string, unknown>;
  };
  return { ...cdkJson.context, ...overrides };
}

const show = (value: unknown): string => (value === undefined ? 'undefined' : JSON.stringify(value));

function positiveInteger(key: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new Error(`context '${key}' must be a positive integer, got ${show(value)}`);
  }
  return value;
}

/** Reads the context the app was given; throws before any construct exists, showing the bad value. */
export function readConfig(get: (key: string) => unknown): DtcConfig {
  const participants = get('participants');
  if (!Array.isArray(participants) || participants.length === 0) {
    throw new Error(`context 'participants' must be a non-empty array of service names, got ${show(participants)}`);
  }
  for (const p of participants) {
    if (typeof p !== 'string' || !NAME.test(p)) {
      throw new Error(`context 'participants' has an invalid name ${show(p)}: must match ${NAME} (in ${show(participants)})`);
    }
  }
  const duplicate = participants.find((p, i) => participants.indexOf(p) !== i);
  if (duplicate !== undefined) {
    throw new Error(`context 'participants' names ${show(duplicate)} twice (in ${show(participants)})`);
  }
  const prefix = get('prefix') ?? 'dtc';
  if (typeof prefix !== 'string' || !NAME.test(prefix)) {
    throw new Error(`context 'prefix' must match ${NAME}, got ${show(prefix)}`);
  }
  const logLevel = get('logLevel') ?? 'INFO';
  if (!LOG_LEVELS.includes(logLevel as DtcConfig['logLevel'])) {
    throw new Error(`context 'logLevel' must be one of ${LOG_LEVELS.join(', ')}, got ${show(logLevel)}`);
  }
  return {
    prefix,
    participants: participants as string[],
    defaultPrepareSeconds: positiveInteger('defaultPrepareSeconds', get('defaultPrepareSeconds')),
    defaultCommitSeconds: positiveInteger('defaultCommitSeconds', get('defaultCommitSeconds')),
    retentionDays: positiveInteger('retentionDays', get('retentionDays')),
    logLevel: logLevel as DtcConfig['logLevel'],
  };
}

export interface BuildAppProps {
  /** Replaces cdk.json's context (CLI `-c` values still win, as with any CDK app). */
  context?: Record<string, unknown>;
  /** false skips esbuild bundling, so an in-process synth takes seconds. Default true. */
  bundle?: boolean;
  outdir?: string;
}

export function buildApp(props: BuildAppProps = {}): { app: App; data: DataStack; coordinator: CoordinatorStack } {
  const app = new App({
    context: props.context ?? loadCdkContext(),
    // After the CLI's context, so that `bundle: false` holds even under `cdk synth`.
    postCliContext: props.bundle === false ? { 'aws:cdk:bundling-stacks': [] } : {},
    ...(props.outdir === undefined ? {} : { outdir: props.outdir }),
  });
  const config = readConfig((key) => app.node.tryGetContext(key));
  const data = new DataStack(app, 'DtcData', { config, description: 'DTC: transaction log and queues (stateful)' });
  const coordinator = new CoordinatorStack(app, 'DtcCoordinator', {
    config,
    data,
    description: 'DTC: coordinator functions, state machine and API (stateless)',
  });
  return { app, data, coordinator };
}
