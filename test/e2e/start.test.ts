// `npm start` as a user runs it: a child process on a free port with its own DTC_HOME; it writes
// outputs.json when ready, serves a demo order, and stops cleanly on Ctrl-C (SIGINT).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { expect, it, vi } from 'vitest';
import { REPO_ROOT } from '../../src/local/stack';

it('npm start serves the demo shop and stops cleanly on SIGINT', async () => {
  const home = mkdtempSync(path.join(tmpdir(), 'dtc-start-'));
  const port = 40_000 + Math.floor(Math.random() * 20_000);
  // What `npm start` runs: node itself with tsx's loader, no relaying CLI in between (tsx's CLI
  // SIGKILLs its child when the child does not confirm a signal within 30 ms, as a busy one may not).
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/local/main.ts'], {
    cwd: REPO_ROOT,
    env: { ...process.env, DTC_HOME: home, DTC_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so SIGINT goes to the group as a terminal's Ctrl-C does.
    detached: true,
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    const outputsFile = path.join(home, 'outputs.json');
    await vi.waitFor(() => expect(existsSync(outputsFile), output).toBe(true), { timeout: 60_000, interval: 100 });
    const outputs = JSON.parse(readFileSync(outputsFile, 'utf8'));
    expect(outputs.apiUrl).toBe(`http://127.0.0.1:${port}`);
    expect(Object.keys(outputs.participantQueues)).toEqual(['inventory', 'payment', 'shipping', 'order']);
    expect(outputs.endpoints).toMatchObject({ dynamodb: expect.stringMatching(/^http:\/\/127\.0\.0\.1:/), sqs: expect.any(String), stepfunctions: expect.any(String) });

    const body = readFileSync(path.join(REPO_ROOT, 'examples/order.json'), 'utf8');
    const started = await fetch(`${outputs.apiUrl}/transactions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(started.status).toBe(202);
    const { txId } = (await started.json()) as { txId: string };
    await expect
      .poll(async () => ((await (await fetch(`${outputs.apiUrl}/transactions/${txId}`)).json()) as { status: string }).status, { timeout: 10_000, interval: 100 })
      .toBe('COMMITTED');
    expect(await (await fetch(`${outputs.apiUrl}/demo/orders/o-1`)).json()).toEqual({ orderId: 'o-1', status: 'CONFIRMED' });

    // The console (the old /dashboard redirects there): its page, a script that at least compiles,
    // and what it reads of the stack.
    const dashboard = await fetch(`${outputs.apiUrl}/dashboard`, { redirect: 'manual' });
    expect([dashboard.status, dashboard.headers.get('location')]).toEqual([301, '/console']);
    expect(await (await fetch(`${outputs.apiUrl}/console`)).text()).toContain('<h1>dtc console</h1>');
    const script = await (await fetch(`${outputs.apiUrl}/console/assets/console.js`)).text();
    expect(() => new vm.Script(script)).not.toThrow();
    const overview = (await (await fetch(`${outputs.apiUrl}/console/api/overview`)).json()) as { counts: Record<string, number> };
    expect(overview.counts.COMMITTED).toBe(1);

    // A second start on the same data directory refuses at once, naming the one that holds it.
    const second = spawnSync(process.execPath, ['--import', 'tsx', 'src/local/main.ts'], {
      cwd: REPO_ROOT,
      env: { ...process.env, DTC_HOME: home, DTC_PORT: String(port + 1) },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(second.status, second.stderr).toBe(1);
    expect(second.stderr).toContain(`${home} is in use by another npm start (pid ${child.pid})`);

    process.kill(-child.pid!, 'SIGINT');
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 15_000))]);
    expect(code, output).toBe(0);
    expect(output).toContain('[dtc] stopped');
    expect(existsSync(path.join(home, 'dtc.pid'))).toBe(false);
  } finally {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    rmSync(home, { recursive: true, force: true });
  }
}, 120_000);
