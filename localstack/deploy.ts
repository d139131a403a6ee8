// `npm run localstack:deploy`: deploy the same CDK app to a running LocalStack with cdklocal
// (bootstrap, then both stacks), and write the outputs file the end-to-end harness reads.
// Settings (environment):
//   LOCALSTACK_ENDPOINT  default http://localhost.localstack.cloud:4566
//   DTC_PARTICIPANTS     comma-separated participant services (default: cdk.json's)
//   DTC_OUTPUTS          outputs file (default localstack/cdk-outputs.json)
// The steps are plain data so a test can check them with a fake runner (no Docker here).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readDeployedOutputs, type DeployedOutputs } from './outputs';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DEFAULT_ENDPOINT = 'http://localhost.localstack.cloud:4566';
export const DEFAULT_OUTPUTS = 'localstack/cdk-outputs.json';
/** LocalStack's account and the region the harness's LocalStack target expects. */
export const LOCALSTACK_ACCOUNT = '000000000000';
export const LOCALSTACK_REGION = 'us-east-1';
/** The init hook in init/ready.d that checks the services the app needs. */
export const SERVICES_HOOK = '10-dtc-services.sh';

export interface DeployConfig {
  endpoint: string;
  outputsFile: string;
  participants?: string[];
}

export function configFromEnv(env: NodeJS.ProcessEnv): DeployConfig {
  const endpoint = (env.LOCALSTACK_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+$/.test(endpoint)) throw new Error(`LOCALSTACK_ENDPOINT must be http(s)://host:port, got '${endpoint}'`);
  const participants = env.DTC_PARTICIPANTS?.split(',').map((p) => p.trim()).filter(Boolean);
  return {
    endpoint,
    outputsFile: path.resolve(REPO_ROOT, env.DTC_OUTPUTS ?? DEFAULT_OUTPUTS),
    ...(participants?.length ? { participants } : {}),
  };
}

export interface Step {
  name: string;
  command: string;
  args: string[];
  /** Added to the environment the command runs in. */
  env: Record<string, string>;
}

/**
 * cdklocal needs an S3 endpoint with `.s3.` in its host to tell bucket requests apart; LocalStack
 * serves S3 under s3.localhost.localstack.cloud on the same port.
 */
export function s3Endpoint(endpoint: string): string {
  const url = new URL(endpoint);
  return `${url.protocol}//s3.localhost.localstack.cloud:${url.port || (url.protocol === 'https:' ? '443' : '80')}`;
}

export function deploySteps(config: DeployConfig): Step[] {
  const env = {
    AWS_ENDPOINT_URL: config.endpoint,
    AWS_ENDPOINT_URL_S3: s3Endpoint(config.endpoint),
    AWS_REGION: LOCALSTACK_REGION,
    AWS_DEFAULT_REGION: LOCALSTACK_REGION,
    // cdklocal drops AWS_* variables it is not told to keep (so a profile cannot send it to AWS).
    AWS_ENVAR_ALLOWLIST: 'AWS_REGION,AWS_DEFAULT_REGION',
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    CDK_DEFAULT_ACCOUNT: LOCALSTACK_ACCOUNT,
    CDK_DEFAULT_REGION: LOCALSTACK_REGION,
    CDK_DISABLE_CLI_TELEMETRY: 'true',
  };
  const context = [
    // No X-Ray backend to send traces to on LocalStack; the stacks are otherwise the ones AWS gets.
    '-c', 'tracing=false',
    ...(config.participants ? ['-c', `participants=${config.participants.join(',')}`] : []),
  ];
  return [
    {
      name: 'bootstrap',
      command: 'npx',
      args: ['cdklocal', 'bootstrap', `aws://${LOCALSTACK_ACCOUNT}/${LOCALSTACK_REGION}`, '--no-notices', ...context],
      env,
    },
    {
      name: 'deploy',
      command: 'npx',
      args: [
        'cdklocal', 'deploy', 'DtcData', 'DtcCoordinator',
        '--require-approval', 'never',
        '--outputs-file', config.outputsFile,
        '--no-notices',
        ...context,
      ],
      env,
    },
  ];
}

export interface Io {
  /** Run a step; resolves with its exit code. */
  run(step: Step): Promise<number>;
  /** GET a URL; resolves with the parsed JSON body, rejects when unreachable. */
  getJson(url: string): Promise<unknown>;
  readFile(file: string): string;
  sleep(ms: number): Promise<void>;
  now(): number;
  log(line: string): void;
}

interface InitReport {
  completed?: boolean;
  scripts?: { stage?: string; name?: string; state?: string }[];
}

/**
 * Wait until LocalStack answers and its READY init stage has run, then check our hook's verdict.
 * A hook that failed names the services missing in the container's log; say so here.
 */
export async function waitForLocalStack(config: DeployConfig, io: Io, timeoutMs = 180_000): Promise<void> {
  const until = io.now() + timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    try {
      const report = (await io.getJson(`${config.endpoint}/_localstack/init/ready`)) as InitReport;
      if (report.completed === true) {
        const hook = report.scripts?.find((s) => s.name === SERVICES_HOOK);
        if (!hook) {
          io.log(`[localstack] ${SERVICES_HOOK} did not run (LocalStack not started from localstack/docker-compose.yml?): deploying anyway`);
        } else if (hook.state !== 'SUCCESSFUL') {
          throw new Error(`LocalStack's init hook ${SERVICES_HOOK} ended ${hook.state}: a service the app needs is missing (docker logs dtc-localstack)`);
        }
        return;
      }
      last = 'init stage READY not completed';
    } catch (err) {
      if ((err as Error).message.includes(SERVICES_HOOK)) throw err;
      last = (err as Error).message;
    }
    if (io.now() >= until) {
      throw new Error(`LocalStack at ${config.endpoint} was not ready within ${timeoutMs / 1000} s (${last}); is it running? npm run localstack:up`);
    }
    await io.sleep(2000);
  }
}

/** Wait for LocalStack, run every step in order (stopping at the first failure), read the outputs. */
export async function runDeploy(config: DeployConfig, io: Io): Promise<DeployedOutputs> {
  await waitForLocalStack(config, io);
  for (const step of deploySteps(config)) {
    io.log(`[localstack] ${step.name}: ${step.command} ${step.args.join(' ')}`);
    const code = await io.run(step);
    if (code !== 0) throw new Error(`${step.name} failed with exit code ${code}: ${step.command} ${step.args.join(' ')}`);
  }
  const outputs = readDeployedOutputs(JSON.parse(io.readFile(config.outputsFile)) as unknown, config.outputsFile);
  io.log(`[localstack] API            ${outputs.apiUrl}`);
  io.log(`[localstack] participants   ${Object.keys(outputs.participantQueues).join(', ')}`);
  io.log(`[localstack] outputs        ${path.relative(REPO_ROOT, config.outputsFile)} (DTC_TARGET=localstack reads it)`);
  return outputs;
}

const realIo: Io = {
  run: (step) =>
    new Promise((resolve, reject) => {
      const child = spawn(step.command, step.args, { cwd: REPO_ROOT, env: { ...process.env, ...step.env }, stdio: 'inherit' });
      child.once('error', reject);
      child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    }),
  getJson: async (url) => {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`${url} answered ${res.status}`);
    return res.json() as Promise<unknown>;
  },
  readFile: (file) => readFileSync(file, 'utf8'),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  now: () => Date.now(),
  log: (line) => console.log(line),
};

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  runDeploy(configFromEnv(process.env), realIo).catch((err: unknown) => {
    console.error(`[localstack] ${(err as Error).message}`);
    process.exit(1);
  });
}
