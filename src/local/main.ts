// `npm start`: the coordinator with the demo shop on the embedded local stack.
// Settings: DTC_PORT (API port, default 4000), DTC_HOME (data directory, default .dtc),
// DTC_FAULTS (fault injection, JSON: see src/local/faults.ts and docs/fault-tolerance.md),
// DTC_DEMO_LOCK_PAUSE_MS (the deadlock demo: inventory's pause between the SKUs of an order).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startLocalStack } from './stack';
import { addConsole } from '../console/local';
import { startDemo } from './demo-routes';
import { installFaultsFromEnv } from './faults';

const port = Number(process.env.DTC_PORT ?? 4000);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`DTC_PORT must be a port number, got '${process.env.DTC_PORT}'`);
  process.exit(2);
}
const home = path.resolve(process.env.DTC_HOME ?? '.dtc');
// The deadlock demo: inventory pauses this long between the SKUs of an order, locks held, so two
// orders that list the same SKUs in opposite orders deadlock every time (README, "See a deadlock").
const lockPauseMs = Number(process.env.DTC_DEMO_LOCK_PAUSE_MS ?? 0);
if (!Number.isInteger(lockPauseMs) || lockPauseMs < 0 || lockPauseMs > 10_000) {
  console.error(`DTC_DEMO_LOCK_PAUSE_MS must be a whole number of milliseconds from 0 to 10000, got '${process.env.DTC_DEMO_LOCK_PAUSE_MS}'`);
  process.exit(2);
}

// One stack per data directory: LevelDB allows one process, and a second would fail obscurely.
// The pid file of a process that is gone (kill -9) is stale and taken over.
const pidFile = path.join(home, 'dtc.pid');
mkdirSync(home, { recursive: true });
try {
  const other = Number(readFileSync(pidFile, 'utf8'));
  if (Number.isInteger(other) && other > 0 && other !== process.pid && isAlive(other)) {
    console.error(`[dtc] ${home} is in use by another npm start (pid ${other}): stop it, or choose another data directory with DTC_HOME`);
    process.exit(1);
  }
} catch (err) {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}
writeFileSync(pidFile, String(process.pid));

/** A live process that is an `npm start` (where /proc tells: a reused pid is someone else). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('src/local/main');
  } catch {
    return true; // no /proc (macOS): alive is all we know
  }
}

// Installed before anything builds a client; injecting starts once the stack is up.
const faults = (() => {
  try {
    return installFaultsFromEnv();
  } catch (err) {
    console.error(`[dtc] ${(err as Error).message}`);
    return process.exit(2);
  }
})();
const started = Date.now();
console.log(`[dtc] starting the embedded local stack (data in ${home}) ...`);
const stack = await startLocalStack({ home, port }).catch((err: unknown) => {
  if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
    console.error(`[dtc] port ${port} on 127.0.0.1 is in use: stop what uses it, or choose another port with DTC_PORT`);
    process.exit(1);
  }
  throw err;
});
const demo = await startDemo(stack, {
  ...(faults ? { wrapParticipant: faults.wrapParticipant, wrapBarrierStore: faults.wrapBarrierStore } : {}),
  ...(lockPauseMs > 0 ? { locks: { pauseBetweenLocksMs: lockPauseMs } } : {}),
});
addConsole(stack);
const outputsFile = path.join(home, 'outputs.json');
await writeFile(outputsFile, `${JSON.stringify({ ...stack.outputs, demo: demo.tables }, null, 2)}\n`);

console.log(`[dtc] ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`[dtc] API            ${stack.outputs.apiUrl}`);
console.log(`[dtc] DynamoDB       ${stack.outputs.endpoints.dynamodb}`);
console.log(`[dtc] SQS            ${stack.outputs.endpoints.sqs}`);
console.log(`[dtc] Step Functions ${stack.outputs.endpoints.stepfunctions}`);
console.log(`[dtc] participants   ${Object.keys(stack.outputs.participantQueues).join(', ')} (demo shop running)`);
console.log(`[dtc] console        ${stack.outputs.apiUrl}/console`);
console.log(`[dtc] events         ${stack.outputs.apiUrl}/events (Server-Sent Events)`);
console.log(`[dtc] outputs        ${outputsFile}`);
console.log(`[dtc] try: curl -s -X POST ${stack.outputs.apiUrl}/transactions -H 'content-type: application/json' -d @examples/order.json`);
if (lockPauseMs > 0) console.log(`[dtc] deadlock demo: inventory pauses ${lockPauseMs} ms between SKUs (DTC_DEMO_LOCK_PAUSE_MS)`);
if (faults) {
  faults.enabled = true;
  console.log(`[dtc] FAULTS         ${JSON.stringify(faults.config)}`);
}
console.log('[dtc] Ctrl-C to stop');

let stopping = false;
const shutdown = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  console.log(`[dtc] ${signal}: stopping ...`);
  await demo.stop();
  await stack.stop();
  rmSync(pidFile, { force: true });
  console.log('[dtc] stopped');
  process.exit(0);
};
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
