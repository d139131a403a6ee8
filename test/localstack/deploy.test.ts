// The LocalStack path as far as a machine without Docker can take it: the compose file parses and
// says what it must, the init hook checks every service the templates use, and the deploy script's
// steps run in order against a fake command runner, with the CLI context the CDK app reads back.
import { accessSync, constants, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Template } from 'aws-cdk-lib/assertions';
import { parse } from 'yaml';
import { buildApp, loadCdkContext } from '../../cdk/build';
import {
  configFromEnv,
  DEFAULT_OUTPUTS,
  deploySteps,
  REPO_ROOT,
  runDeploy,
  s3Endpoint,
  SERVICES_HOOK,
  type DeployConfig,
  type Io,
  type Step,
} from '../../localstack/deploy';

const file = (p: string) => path.join(REPO_ROOT, p);

describe('docker-compose.yml', () => {
  const compose = parse(readFileSync(file('localstack/docker-compose.yml'), 'utf8')) as Record<string, any>;
  const service = compose.services.localstack as Record<string, any>;

  it('pins the LocalStack image to a version', () => {
    const image = /^\$\{LOCALSTACK_IMAGE:-(.+)\}$/.exec(service.image)?.[1] ?? service.image;
    expect(image).toMatch(/^localstack\/localstack(-pro)?:\d+\.\d+\.\d+$/);
  });

  it('binds its ports to loopback only', () => {
    expect(service.ports.length).toBeGreaterThan(0);
    for (const port of service.ports as string[]) expect(port).toMatch(/^127\.0\.0\.1:/);
    expect(service.ports).toContain('127.0.0.1:4566:4566');
  });

  it('passes an auth token on from the environment, and needs none for the pinned 4.x community image', () => {
    expect(service.environment.LOCALSTACK_AUTH_TOKEN).toBe('${LOCALSTACK_AUTH_TOKEN:-}');
    // Images from 2026.03.0 on (calendar versions) need a token: the default must not be one of them.
    const image = /^\$\{LOCALSTACK_IMAGE:-(.+)\}$/.exec(service.image)?.[1] ?? service.image;
    expect(image).toMatch(/^localstack\/localstack:4\.\d+\.\d+$/);
  });

  it('mounts the init hooks and the Docker socket Lambda needs, on a network Lambda containers join', () => {
    expect(service.volumes).toEqual(
      expect.arrayContaining(['/var/run/docker.sock:/var/run/docker.sock', './init/ready.d:/etc/localstack/init/ready.d:ro']),
    );
    expect(compose.networks.dtc.name).toBe(service.environment.LAMBDA_DOCKER_NETWORK);
  });
});

describe('the init hook', () => {
  const hook = file(`localstack/init/ready.d/${SERVICES_HOOK}`);

  it('is an executable shell script', () => {
    expect(() => accessSync(hook, constants.X_OK)).not.toThrow();
    expect(readFileSync(hook, 'utf8')).toMatch(/^#!\/bin\/sh\n/);
  });

  it('checks every AWS service the synthesized templates use', () => {
    const listed = /NEEDED = \[([\s\S]*?)\]/.exec(readFileSync(hook, 'utf8'))?.[1] ?? '';
    const needed = new Set([...listed.matchAll(/"([a-z0-9]+)"/g)].map((m) => m[1]));
    const serviceOf: Record<string, string> = {
      DynamoDB: 'dynamodb', SQS: 'sqs', Lambda: 'lambda', StepFunctions: 'stepfunctions', ApiGateway: 'apigateway',
      Events: 'events', Logs: 'logs', CloudWatch: 'cloudwatch', IAM: 'iam', SNS: 'sns',
    };
    for (const type of resourceTypes(TRACING_OFF_WITH_SILENT)) {
      const namespace = type.split('::')[1]!;
      if (namespace === 'CDK') continue;
      expect({ type, checked: needed.has(serviceOf[namespace] ?? '?') }).toEqual({ type, checked: true });
    }
    for (const forCdk of ['cloudformation', 's3', 'ssm', 'sts']) expect(needed.has(forCdk)).toBe(true);
  });
});

/** The context the deploy step passes (checked below), and the app built with it, once. */
const TRACING_OFF_WITH_SILENT = { tracing: 'false', participants: 'inventory,silent' };
let built: { data: Record<string, any>; coordinator: Record<string, any> } | undefined;
function templates(context: Record<string, string>) {
  expect(context).toEqual(TRACING_OFF_WITH_SILENT);
  if (!built) {
    const app = buildApp({ bundle: false, context: loadCdkContext(context) });
    built = { data: Template.fromStack(app.data).toJSON(), coordinator: Template.fromStack(app.coordinator).toJSON() };
  }
  return built;
}

/** Every resource type of both synthesized stacks. */
function resourceTypes(context: Record<string, string>): Set<string> {
  const { data, coordinator } = templates(context);
  return new Set([data, coordinator].flatMap((t) => Object.values(t.Resources as Record<string, { Type: string }>).map((r) => r.Type)));
}

describe('the deploy steps', () => {
  const config: DeployConfig = { endpoint: 'http://localhost.localstack.cloud:4566', outputsFile: file(DEFAULT_OUTPUTS), participants: ['inventory', 'silent'] };

  it('reads its settings from the environment, with defaults', () => {
    expect(configFromEnv({})).toEqual({ endpoint: 'http://localhost.localstack.cloud:4566', outputsFile: file('localstack/cdk-outputs.json') });
    expect(configFromEnv({ LOCALSTACK_ENDPOINT: 'http://127.0.0.1:4566/', DTC_PARTICIPANTS: 'a, b', DTC_OUTPUTS: 'out.json' })).toEqual({
      endpoint: 'http://127.0.0.1:4566',
      outputsFile: file('out.json'),
      participants: ['a', 'b'],
    });
    expect(() => configFromEnv({ LOCALSTACK_ENDPOINT: 'localhost:4566' })).toThrow(/LOCALSTACK_ENDPOINT must be http\(s\):\/\/host:port, got 'localhost:4566'/);
  });

  it('bootstraps, then deploys both stacks without prompts, writing the outputs file', () => {
    const [bootstrap, deploy] = deploySteps(config) as [Step, Step];
    expect(bootstrap.args.slice(0, 3)).toEqual(['cdklocal', 'bootstrap', 'aws://000000000000/us-east-1']);
    expect(deploy.args).toEqual(
      expect.arrayContaining(['cdklocal', 'deploy', 'DtcData', 'DtcCoordinator', '--require-approval', 'never', '--outputs-file', config.outputsFile]),
    );
    for (const step of [bootstrap, deploy]) {
      expect(step.command).toBe('npx');
      expect(step.env).toMatchObject({
        AWS_ENDPOINT_URL: config.endpoint,
        AWS_ENDPOINT_URL_S3: 'http://s3.localhost.localstack.cloud:4566',
        AWS_REGION: 'us-east-1',
        AWS_ENVAR_ALLOWLIST: 'AWS_REGION,AWS_DEFAULT_REGION',
        CDK_DISABLE_CLI_TELEMETRY: 'true',
      });
    }
    expect(s3Endpoint('https://ls.example:443')).toBe('https://s3.localhost.localstack.cloud:443');
  });

  it('passes context the CDK app reads back as intended (the CLI hands values over as strings)', () => {
    const deploy = deploySteps(config)[1]!;
    const context: Record<string, string> = {};
    deploy.args.forEach((arg, i) => {
      if (arg === '-c') {
        const [key, value] = deploy.args[i + 1]!.split(/=(.*)/, 2) as [string, string];
        context[key] = value;
      }
    });
    expect(context).toEqual({ tracing: 'false', participants: 'inventory,silent' });
    const template = templates(context).coordinator;
    const functions = Object.values(template.Resources as Record<string, { Type: string; Properties: Record<string, any> }>).filter(
      (r) => r.Type === 'AWS::Lambda::Function',
    );
    expect(functions.length).toBeGreaterThan(0);
    for (const fn of functions) expect(fn.Properties.Environment.Variables.POWERTOOLS_TRACE_ENABLED).toBe('false');
    const outputs = Object.keys(template.Outputs as Record<string, unknown>);
    expect(outputs).toEqual(expect.arrayContaining(['InventoryQueueUrl', 'SilentQueueUrl']));
    expect(outputs).not.toContain('PaymentQueueUrl');
  });
});

/** A fake LocalStack and shell: scripted init answers, recorded commands, an outputs file. */
function fakeIo(options: { init: (unknown | Error)[]; exitCodes?: Record<string, number>; outputs?: unknown }) {
  const ran: string[] = [];
  const logs: string[] = [];
  let clock = 0;
  let call = 0;
  const io: Io = {
    run: async (step) => {
      ran.push(step.name);
      return options.exitCodes?.[step.name] ?? 0;
    },
    getJson: async () => {
      const answer = options.init[Math.min(call++, options.init.length - 1)];
      if (answer instanceof Error) throw answer;
      return answer;
    },
    readFile: () => JSON.stringify(options.outputs),
    sleep: async (ms) => void (clock += ms),
    now: () => clock,
    log: (line) => void logs.push(line),
  };
  return { io, ran, logs };
}

const OUTPUTS = {
  DtcData: {},
  DtcCoordinator: {
    ApiUrl: 'https://abc123.execute-api.us-east-1.localhost.localstack.cloud:4566/v1/',
    TxTableName: 'DtcData-LogTable-1',
    LockTableName: 'DtcData-LocksTable-1',
    ReplyQueueUrls: JSON.stringify({
      inventory: 'http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/dtc-inventory-replies',
      'order-history': 'http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/dtc-order-history-replies',
    }),
    InventoryQueueUrl: 'http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/dtc-inventory-requests',
    OrderHistoryQueueUrl: 'http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/dtc-order-history-requests',
    StateMachineArn: 'arn:aws:states:us-east-1:000000000000:stateMachine:sm',
  },
};
const READY = { completed: true, scripts: [{ stage: 'READY', name: SERVICES_HOOK, state: 'SUCCESSFUL' }] };

describe('runDeploy', () => {
  const config: DeployConfig = { endpoint: 'http://localhost.localstack.cloud:4566', outputsFile: '/tmp/outputs.json' };

  it('waits for LocalStack and its init hook, runs the steps in order, and reads the outputs', async () => {
    const { io, ran, logs } = fakeIo({ init: [new Error('ECONNREFUSED'), { completed: false }, READY], outputs: OUTPUTS });
    const outputs = await runDeploy(config, io);
    expect(ran).toEqual(['bootstrap', 'deploy']);
    expect(outputs.participantQueues).toEqual({
      inventory: OUTPUTS.DtcCoordinator.InventoryQueueUrl,
      'order-history': OUTPUTS.DtcCoordinator.OrderHistoryQueueUrl,
    });
    expect(outputs.replyQueueUrls).toEqual({
      inventory: 'http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/dtc-inventory-replies',
      'order-history': 'http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/dtc-order-history-replies',
    });
    expect(outputs).toMatchObject({ apiUrl: OUTPUTS.DtcCoordinator.ApiUrl, txTable: 'DtcData-LogTable-1', lockTable: 'DtcData-LocksTable-1' });
    expect(logs.at(-1)).toMatch(/outputs .*DTC_TARGET=localstack/);
  });

  it('stops at the first failing step', async () => {
    const { io, ran } = fakeIo({ init: [READY], exitCodes: { bootstrap: 1 }, outputs: OUTPUTS });
    await expect(runDeploy(config, io)).rejects.toThrow(/^bootstrap failed with exit code 1: npx cdklocal bootstrap/);
    expect(ran).toEqual(['bootstrap']);
  });

  it('refuses to deploy when the init hook found a service missing', async () => {
    const { io, ran } = fakeIo({ init: [{ completed: true, scripts: [{ stage: 'READY', name: SERVICES_HOOK, state: 'ERROR' }] }] });
    await expect(runDeploy(config, io)).rejects.toThrow(`init hook ${SERVICES_HOOK} ended ERROR`);
    expect(ran).toEqual([]);
  });

  it('gives up on a LocalStack that never comes up, saying how to start it', async () => {
    const { io, ran } = fakeIo({ init: [new Error('ECONNREFUSED')] });
    await expect(runDeploy(config, io)).rejects.toThrow(/was not ready within 180 s \(ECONNREFUSED\).*npm run localstack:up/);
    expect(ran).toEqual([]);
  });

  it('rejects an outputs file without the coordinator stack', async () => {
    const { io } = fakeIo({ init: [READY], outputs: { DtcData: {} } });
    await expect(runDeploy(config, io)).rejects.toThrow(/no stack has an ApiUrl output \(stacks: DtcData\)/);
  });
});

describe('npm scripts', () => {
  const scripts = (JSON.parse(readFileSync(file('package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

  it('deploy to LocalStack with the script above, and run the e2e suite against it with its participants', () => {
    expect(scripts['localstack:deploy']).toBe('tsx localstack/deploy.ts');
    expect(scripts['localstack:up']).toContain('localstack/docker-compose.yml');
    const e2eParticipants = ['inventory', 'payment', 'shipping', 'order', 'silent'];
    expect(scripts['test:localstack']).toContain(`DTC_PARTICIPANTS=${e2eParticipants.join(',')} tsx localstack/deploy.ts`);
    expect(scripts['test:localstack']).toContain('DTC_TARGET=localstack vitest run test/e2e');
  });
});
