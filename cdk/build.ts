// Builds the CDK app in process: the CLI entry (app.ts), the template tests and the embedded local
// stack all go through here, so the template they see is the one `cdk deploy` would deploy.
import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { CoordinatorStack } from './coordinator-stack';
import { DataStack } from './data-stack';

const NAME = /^[a-z][a-z0-9-]{0,39}$/;
const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'CRITICAL', 'SILENT'] as const;

export interface DtcConfig {
  /**
   * Names this environment: the stacks (`<Prefix>Data`, `<Prefix>Coordinator`), the queues
   * (participants find their queue by name), the state machine, the API, alarms, dashboard, topic and
   * bus. Two environments in one account-region differ by prefix.
   */
  prefix: string;
  participants: string[];
  /** Participant -> the IAM principal (role ARN) it runs as, when `participants` is given as an object. */
  participantPrincipals?: Record<string, string>;
  /** Supervision groups per time bucket (spreads the `open` index's writes), and the bucket's length. */
  supervisionShards: number;
  supervisionBucketSeconds: number;
  /** Participant -> the SQS sender ids (its role's unique id, `AROA...`) its replies must carry (context `participantSenderIds`). */
  participantSenderIds?: Record<string, string[]>;
  /** Reserved concurrency of the waiter function (GET /transactions/{id}?wait=N); 0: none. */
  waitConcurrency: number;
  /**
   * Reserve concurrency (docs/performance.md, defaults): false for an account whose concurrency
   * quota is too small to reserve any (a new account's 10), or an emulator without it.
   */
  reservedConcurrency: boolean;
  /** The reply function's reserved concurrency, split evenly into its reply queues' `maxConcurrency`. */
  replyConcurrency: number;
  /** The supervise function's reserved concurrency. */
  superviseConcurrency: number;
  defaultPrepareSeconds: number;
  defaultCommitSeconds: number;
  retentionDays: number;
  logLevel: (typeof LOG_LEVELS)[number];
  /** Days CloudWatch keeps the functions' and the API's logs; one of CloudWatch's retention values. */
  logRetentionDays: number;
  /** X-Ray active tracing on the functions and the API stage (LocalStack's community image has no X-Ray). */
  tracing: boolean;
  /** Stage-wide API throttle, requests/s and burst; POST /transactions gets the smaller start* pair. */
  apiRateLimit: number;
  apiBurstLimit: number;
  startRateLimit: number;
  startBurstLimit: number;
  /** Create the regional API Gateway -> CloudWatch Logs role; false if the account already sets one. */
  apiGatewayCloudWatchRole: boolean;
  /** Alarm when more than this percentage of decisions in 15 minutes are ABORT. */
  abortRateAlarmPercent: number;
  /** An existing SNS topic every alarm notifies (ALARM and OK); absent: the stack creates `<prefix>-alarms`. */
  alarmTopicArn?: string;
  /** Subscribed by email to the topic the stack creates (the address confirms it once). */
  alarmEmail?: string;
  /** Publish decision events (docs/events.md); false switches them off. */
  decisionEvents: boolean;
  /**
   * Also publish `Transaction Finished` (every participant acknowledged). Off by default: waiting
   * services act on `Transaction Decided`, and a finish event would double what events cost.
   */
  finishEvents: boolean;
  /** The bus they go to: `default` (the account's default bus) or the name of a bus the data stack creates (default `<prefix>-events`). */
  eventBus: string;
  /** The sweeper's period on the embedded local stack (EventBridge's floor on AWS is 1 minute; default 2). */
  sweeperLocalRateSeconds: number;
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

/** CloudWatch Logs accepts only these retention periods (days). */
const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/**
 * `cdk deploy -c key=value` hands every value over as a string: read numbers, booleans and JSON
 * arrays from it, and a comma-separated participant list, so the CLI and cdk.json say the same.
 */
function fromCli(key: string, value: unknown): unknown {
  if (typeof value !== 'string') return value;
  try {
    const parsed = JSON.parse(value) as unknown;
    if (typeof parsed === 'number' || typeof parsed === 'boolean' || Array.isArray(parsed)) return parsed;
    // `-c participants='{"inventory":"arn:aws:iam::...:role/inventory"}'`
    if (key === 'participants' && parsed !== null && typeof parsed === 'object') return parsed;
  } catch {
    // not JSON: a plain string
  }
  return key === 'participants' ? value.split(',').map((p) => p.trim()) : value;
}

function nonNegativeInteger(key: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new Error(`context '${key}' must be a whole number of at least 0, got ${show(value)}`);
  }
  return value;
}

function senderIdsOf(value: unknown, participants: string[]): { participantSenderIds?: Record<string, string[]> } {
  if (value === undefined) return {};
  const parsed = typeof value === 'string' ? (JSON.parse(value) as unknown) : value;
  const valid =
    parsed !== null &&
    typeof parsed === 'object' &&
    !Array.isArray(parsed) &&
    Object.entries(parsed).every(([k, ids]) => participants.includes(k) && Array.isArray(ids) && ids.every((id) => typeof id === 'string' && /^[A-Z0-9]{16,128}$/.test(id)));
  if (!valid) throw new Error(`context 'participantSenderIds' must map participants to arrays of IAM unique ids (AROA...), got ${show(value)}`);
  return { participantSenderIds: parsed as Record<string, string[]> };
}

/** `finishEvents` adds to the decision events: asking for it with them switched off is a mistake worth saying. */
function finishEventsOf(finishEvents: boolean, decisionEvents: boolean): boolean {
  if (finishEvents && !decisionEvents) throw new Error("context 'finishEvents' is true but 'decisionEvents' is false: finish events are decision events; switch both on or leave finishEvents off");
  return finishEvents;
}

function booleanOf(key: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new Error(`context '${key}' must be true or false, got ${show(value)}`);
  return value;
}

/** Reads the context the app was given; throws before any construct exists, showing the bad value. */
export function readConfig(getRaw: (key: string) => unknown): DtcConfig {
  const get = (key: string) => fromCli(key, getRaw(key));
  const given = get('participants');
  // An array of service names, or an object of service name -> the role ARN the service runs as.
  const principals = given !== null && typeof given === 'object' && !Array.isArray(given) ? (given as Record<string, unknown>) : undefined;
  const participants = principals ? Object.keys(principals) : given;
  if (!Array.isArray(participants) || participants.length === 0) {
    throw new Error(`context 'participants' must be a non-empty array of service names (or an object of name -> role ARN), got ${show(given)}`);
  }
  for (const [service, arn] of Object.entries(principals ?? {})) {
    if (typeof arn !== 'string' || !/^arn:aws[a-z-]*:iam::\d{12}:(role|user)\/[\w+=,.@/-]{1,512}$/.test(arn)) {
      throw new Error(`context 'participants.${service}' must be the ARN of the IAM role the service runs as, got ${show(arn)}`);
    }
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
  const logRetentionDays = get('logRetentionDays') ?? 30;
  if (typeof logRetentionDays !== 'number' || !LOG_RETENTION_DAYS.includes(logRetentionDays)) {
    throw new Error(`context 'logRetentionDays' must be one of ${LOG_RETENTION_DAYS.join(', ')}, got ${show(logRetentionDays)}`);
  }
  const abortRateAlarmPercent = get('abortRateAlarmPercent') ?? 25;
  if (typeof abortRateAlarmPercent !== 'number' || !(abortRateAlarmPercent > 0 && abortRateAlarmPercent <= 100)) {
    throw new Error(`context 'abortRateAlarmPercent' must be a number above 0 and at most 100, got ${show(abortRateAlarmPercent)}`);
  }
  const alarmEmail = get('alarmEmail');
  if (alarmEmail !== undefined && (typeof alarmEmail !== 'string' || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(alarmEmail))) {
    throw new Error(`context 'alarmEmail' must be an email address, got ${show(alarmEmail)}`);
  }
  const decisionEvents = booleanOf('decisionEvents', get('decisionEvents'), true);
  const eventBus = get('eventBus') ?? `${prefix}-events`;
  // EventBridge's rule for bus names; `aws.` names belong to partner buses.
  if (typeof eventBus !== 'string' || !/^[/.\-_A-Za-z0-9]{1,256}$/.test(eventBus) || eventBus.startsWith('aws.')) {
    throw new Error(`context 'eventBus' must be "default" or an event bus name (letters, digits, . - _ /), got ${show(eventBus)}`);
  }
  const replyConcurrency = positiveInteger('replyConcurrency', get('replyConcurrency') ?? 200);
  // Each reply queue's mapping gets an even share, and SQS mappings take at least 2.
  if (replyConcurrency < 2 * participants.length) {
    throw new Error(`context 'replyConcurrency' must be at least 2 per participant (${2 * participants.length}), got ${replyConcurrency}`);
  }
  const alarmTopicArn = get('alarmTopicArn');
  if (alarmTopicArn !== undefined && (typeof alarmTopicArn !== 'string' || !/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}$/.test(alarmTopicArn))) {
    throw new Error(`context 'alarmTopicArn' must be an SNS topic ARN, got ${show(alarmTopicArn)}`);
  }
  return {
    prefix,
    participants: participants as string[],
    ...(principals ? { participantPrincipals: principals as Record<string, string> } : {}),
    supervisionShards: positiveInteger('supervisionShards', get('supervisionShards') ?? 8),
    supervisionBucketSeconds: positiveInteger('supervisionBucketSeconds', get('supervisionBucketSeconds') ?? 10),
    waitConcurrency: nonNegativeInteger('waitConcurrency', get('waitConcurrency') ?? 50),
    ...senderIdsOf(get('participantSenderIds'), participants as string[]),
    defaultPrepareSeconds: positiveInteger('defaultPrepareSeconds', get('defaultPrepareSeconds')),
    defaultCommitSeconds: positiveInteger('defaultCommitSeconds', get('defaultCommitSeconds')),
    retentionDays: positiveInteger('retentionDays', get('retentionDays')),
    logLevel: logLevel as DtcConfig['logLevel'],
    logRetentionDays,
    tracing: booleanOf('tracing', get('tracing'), true),
    // Defaults (docs/performance.md): a start no longer costs a Step Functions execution, so starts are
    // held under the capacity the log table's default quotas give (about 3,000 tx/s), and the stage
    // under API Gateway's account default of 10,000 requests/s, leaving room for GETs and waits.
    apiRateLimit: positiveInteger('apiRateLimit', get('apiRateLimit') ?? 5000),
    apiBurstLimit: positiveInteger('apiBurstLimit', get('apiBurstLimit') ?? 5000),
    startRateLimit: positiveInteger('startRateLimit', get('startRateLimit') ?? 3000),
    startBurstLimit: positiveInteger('startBurstLimit', get('startBurstLimit') ?? 5000),
    apiGatewayCloudWatchRole: booleanOf('apiGatewayCloudWatchRole', get('apiGatewayCloudWatchRole'), true),
    abortRateAlarmPercent,
    ...(alarmTopicArn === undefined ? {} : { alarmTopicArn }),
    ...(alarmEmail === undefined ? {} : { alarmEmail }),
    decisionEvents,
    finishEvents: finishEventsOf(booleanOf('finishEvents', get('finishEvents'), false), decisionEvents),
    eventBus,
    reservedConcurrency: booleanOf('reservedConcurrency', get('reservedConcurrency'), true),
    replyConcurrency,
    superviseConcurrency: positiveInteger('superviseConcurrency', get('superviseConcurrency') ?? 20),
    sweeperLocalRateSeconds: positiveInteger('sweeperLocalRateSeconds', get('sweeperLocalRateSeconds') ?? 2),
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
  // `dtc` -> DtcData, DtcCoordinator; `dtc-staging` -> DtcStagingData, DtcStagingCoordinator.
  const stackPrefix = pascalCase(config.prefix);
  const data = new DataStack(app, `${stackPrefix}Data`, { config, description: 'DTC: transaction log and queues (stateful)' });
  const coordinator = new CoordinatorStack(app, `${stackPrefix}Coordinator`, {
    config,
    data,
    description: 'DTC: coordinator functions, state machine and API (stateless)',
  });
  return { app, data, coordinator };
}

/** `order-history` -> `OrderHistory`. */
export function pascalCase(name: string): string {
  return name
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}
