// The console in a real browser (Debian's Chromium, driven by playwright-core) on the embedded
// stack: it loads with its libraries from node_modules only, shows a transaction the test made with
// its timeline, draws its charts, aborts a transaction from the page and releases the participant
// its phase two waits for, shows the coordinator's decision events and one published with the real
// EventBridge client, and redrives a dead letter. Skips, saying why, only when there
// is no Chromium (`apt-get install -y chromium`; `.ci/run` installs it).
// DTC_CONSOLE_SCREENSHOTS=<dir> saves the page at 1280x800 and 390x844 there, to look at.
// The gateway checks signatures here (DTC_REQUIRE_AUTH=1), as a deployed API does: the console's
// actions reach it signed, by the embedded console and by `npm run console`'s server alike.
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient, SendMessageCommand } from '@aws-sdk/client-sqs';
import { type Browser, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { readDeployedOutputs } from '../../localstack/outputs';
import { addConsole } from '../../src/console/local';
import { type ConsoleServer, startConsoleServer } from '../../src/console/server';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../src/local/aws-env';
import { startDemo, type RunningDemo } from '../../src/local/demo-routes';
import { signedHeaders } from '../../src/local/sigv4';
import type { LocalStack } from '../../src/local/stack';
import { startLocalAws } from '../support/aws';

const CHROMIUM = process.env.DTC_CHROMIUM ?? '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
process.env.DTC_REQUIRE_AUTH = '1';
if (!hasChromium) console.warn(`[console] SKIPPED the browser test: no Chromium at ${CHROMIUM} (apt-get install -y chromium, or set DTC_CHROMIUM)`);

let stack: LocalStack;
let demo: RunningDemo;
let browser: Browser;
let page: Page;
const external: string[] = [];
const pageErrors: string[] = [];

async function api(method: string, pathname: string, body?: unknown): Promise<{ status: number; body: any }> {
  const url = new URL(`${stack.outputs.apiUrl}${pathname}`);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const headers = await signedHeaders({ method, url, headers: { 'content-type': 'application/json' }, ...(payload === undefined ? {} : { body: payload }) }, LOCAL_CREDENTIALS, LOCAL_REGION);
  const res = await fetch(url, { method, headers, ...(payload === undefined ? {} : { body: payload }) });
  return { status: res.status, body: await res.json() };
}
const post = (pathname: string, body: unknown) => api('POST', pathname, body);
const view = async (txId: string): Promise<any> => (await api('GET', `/transactions/${txId}`)).body;

beforeAll(async () => {
  // `silent` has queues and no consumer: a transaction it belongs to stays PREPARING.
  ({ stack } = await startLocalAws({ app: true, context: { participants: ['inventory', 'payment', 'shipping', 'order', 'silent'] } }));
  demo = await startDemo(stack, { locks: false });
  addConsole(stack);
});

afterAll(async () => {
  await demo?.stop();
  await stack?.stop();
});

/** A transaction of the shop's order service (votes YES) and silent (never votes): it stays PREPARING. */
async function stuckTransaction(orderId: string): Promise<string> {
  const started = await post('/transactions', { participants: [{ service: 'order', operation: { orderId, items: [{ sku: 'sku-2', quantity: 1 }], total: 5 } }, { service: 'silent' }], timeouts: { prepareSeconds: 120, commitSeconds: 30 } });
  expect(started.status).toBe(202);
  return started.body.txId as string;
}

describe.skipIf(!hasChromium)('the console in Chromium', () => {
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('request', (r) => {
      if (!r.url().startsWith(stack.outputs.apiUrl)) external.push(r.url());
    });
    page.on('pageerror', (err) => pageErrors.push(err.message));
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('shows a committed transaction with its timeline, draws the charts, aborts and releases from the page, streams events and redrives a dead letter', async () => {
    // A transaction that commits, and one that stays PREPARING (silent never votes).
    const order = { participants: [
      { service: 'inventory', operation: { items: [{ sku: 'sku-1', quantity: 1 }] } },
      { service: 'payment', operation: { account: 'acct-1', amount: 10 } },
      { service: 'shipping', operation: { orderId: 'c-1', address: '1 Main St' } },
      { service: 'order', operation: { orderId: 'c-1', items: [{ sku: 'sku-1', quantity: 1 }], total: 10 } },
    ] };
    const committed = (await post('/transactions', order)).body.txId as string;
    await expect.poll(async () => (await view(committed)).status, { timeout: 15_000 }).toBe('COMMITTED');
    const stuckId = await stuckTransaction('c-2');

    // The page, opened on the committed transaction.
    expect((await fetch(`${stack.outputs.apiUrl}/dashboard`, { redirect: 'manual' })).headers.get('location')).toBe('/console');
    await page.goto(`${stack.outputs.apiUrl}/console#tx=${committed}`);
    await expect.poll(() => page.textContent('#tx-id'), { timeout: 15_000 }).toBe(committed);
    const steps = await page.locator('#tx .timeline li').allTextContents();
    expect(steps[0]).toMatch(/created with inventory, payment, shipping, order/);
    for (const service of ['inventory', 'payment', 'shipping', 'order']) {
      expect(steps.some((s) => s.includes(`${service} voted YES`))).toBe(true);
      expect(steps.some((s) => s.includes(`${service} acknowledged COMMIT`))).toBe(true);
    }
    expect(steps.some((s) => /decided COMMIT: every participant voted YES/.test(s))).toBe(true);
    expect(steps[steps.length - 1]).toMatch(/finished COMMITTED/);
    // In time order: the decision after every vote, the end after every acknowledgement.
    const index = (re: RegExp) => steps.findIndex((s) => re.test(s));
    expect(index(/decided/)).toBeGreaterThan(Math.max(...['inventory', 'payment', 'shipping', 'order'].map((p) => index(new RegExp(`${p} voted`)))));

    // The charts: uPlot drew on its canvases, and the started line has the two transactions.
    // (Browser code as text: this project's TypeScript has no DOM types.)
    const inked = (await page.evaluate(`[...document.querySelectorAll('#chart-throughput canvas, #chart-latency canvas')].map((canvas) => {
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let painted = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
      return painted;
    })`)) as number[];
    expect(inked).toHaveLength(2);
    for (const painted of inked) expect(painted).toBeGreaterThan(1_000);
    await expect.poll(async () => page.textContent('#counts'), { timeout: 10_000 }).toMatch(/1committed/);

    // Both transactions are listed; the participant filter keeps the one with silent.
    const listed = () => page.locator('#recent tbody tr[data-id]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id')));
    await expect.poll(listed, { timeout: 10_000 }).toEqual([stuckId, committed]);
    await page.selectOption('#filters select[name=participant]', 'silent');
    await expect.poll(listed, { timeout: 10_000 }).toEqual([stuckId]);

    // Abort the PREPARING one from the page.
    await page.click(`#recent tbody tr[data-id="${stuckId}"]`);
    await expect.poll(() => page.textContent('#tx-id'), { timeout: 10_000 }).toBe(stuckId);
    await page.fill('#abort-reason', 'browser test');
    await page.click('#abort');
    await expect.poll(async () => (await view(stuckId)).decision?.outcome, { timeout: 10_000 }).toBe('ABORT');
    expect((await view(stuckId)).decision.reason).toContain('aborted on request: browser test');
    await expect.poll(() => page.locator('#tx .timeline').textContent(), { timeout: 10_000 }).toMatch(/decided ABORT: aborted on request: browser test/);

    // Phase two waits for silent's acknowledgement, which will never come: an operator releases it
    // from the page, and the transaction finishes, the release on its timeline.
    await page.click('#tx button[data-release="silent"]');
    await page.fill('#release-form input[name=operator]', 'test operator');
    await page.fill('#release-form input[name=reason]', 'silent is retired');
    await page.click('#release-confirm');
    await expect.poll(async () => (await view(stuckId)).status, { timeout: 10_000 }).toBe('ABORTED');
    expect((await view(stuckId)).releases).toEqual([{ participant: 'silent', operator: expect.stringMatching(/^test operator/), reason: 'silent is retired', at: expect.any(String) }]);
    await expect.poll(() => page.locator('#tx .timeline').textContent(), { timeout: 10_000 }).toMatch(/silent released by test operator.*: silent is retired.*finished ABORTED/);

    // The coordinator's decision events show up live, and so does one published with the real EventBridge client.
    const eventTexts = () => page.locator('#events li').allTextContents();
    await expect.poll(eventTexts, { timeout: 10_000 }).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`Transaction Decided ${committed.slice(0, 8)}… COMMIT`))]));
    const events = new EventBridgeClient({ endpoint: stack.outputs.endpoints.events!, region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS });
    const put = await events.send(new PutEventsCommand({ Entries: [{ Source: 'test', DetailType: 'Console Test', Detail: JSON.stringify({ txId: 'console-test-event' }) }] }));
    expect(put.FailedEntryCount).toBe(0);
    await expect.poll(eventTexts, { timeout: 10_000 }).toEqual(expect.arrayContaining([expect.stringMatching(/Console Test console-…/)]));
    events.destroy();

    // A dead letter in silent's request DLQ goes back to its request queue with one click.
    const dlq = Object.entries(stack.outputs.queues).find(([name]) => name.endsWith('-silent-requests-dlq'))![1];
    const source = stack.outputs.participantQueues.silent!;
    const depth = async (QueueUrl: string) => Number((await stack.sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }))).Attributes!.ApproximateNumberOfMessages);
    const letter = JSON.stringify({ v: 1, type: 'ABORT', txId: stuckId, participant: 'silent', attempt: 99 });
    await stack.sqs.send(new SendMessageCommand({ QueueUrl: dlq, MessageBody: letter, MessageAttributes: { 'dtc-reason': { DataType: 'String', StringValue: 'test' } } }));
    const redrive = page.locator('#queues tbody tr', { hasText: 'silent-requests-dlq' }).getByRole('button', { name: 'Redrive' });
    await redrive.waitFor({ timeout: 10_000 });
    page.once('dialog', (d) => void d.accept());
    await redrive.click();
    await expect.poll(() => depth(dlq), { timeout: 10_000 }).toBe(0);
    // Back in silent's request queue (nobody consumes it; supervision may have re-sent ABORTs there too).
    const bodies = async () => ((await stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: source, MaxNumberOfMessages: 10, VisibilityTimeout: 0 }))).Messages ?? []).map((m) => m.Body);
    await expect.poll(bodies, { timeout: 10_000 }).toContain(letter);

    // Everything came from the local API: no CDN, nothing external; and the page threw nothing.
    expect(external).toEqual([]);
    expect(pageErrors).toEqual([]);

    const shots = process.env.DTC_CONSOLE_SCREENSHOTS;
    if (shots) {
      mkdirSync(shots, { recursive: true });
      await page.evaluate('window.scrollTo(0, 0)');
      await page.screenshot({ path: path.join(shots, 'console-1280x800-full.png'), fullPage: true });
      await page.screenshot({ path: path.join(shots, 'console-1280x800.png') });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.screenshot({ path: path.join(shots, 'console-390x844.png') });
      await page.screenshot({ path: path.join(shots, 'console-390x844-full.png'), fullPage: true });
    }
  });
});

describe('the console for a deployed stack (npm run console)', () => {
  let server: ConsoleServer;
  beforeAll(async () => {
    // The stack's outputs as `cdk deploy --outputs-file` writes them; the API at its local address.
    const outputs = { ...readDeployedOutputs(stack.outputs.stacks), apiUrl: stack.outputs.apiUrl };
    // Clients as the CLI makes them: the SDK's default chain (here the local stack's environment).
    server = await startConsoleServer({ outputs, dynamodb: new DynamoDBClient({ region: LOCAL_REGION }), sqs: new SQSClient({ region: LOCAL_REGION }), port: 0 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('serves the page and its libraries, reads the stack, and acts on it with signed API calls', async () => {
    const page = await fetch(`${server.url}/console`);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('<script src="/console/assets/uplot.js" defer></script>');
    for (const asset of ['uplot.js', 'uplot.css', 'cytoscape.js', 'console.js', 'console.css']) expect((await fetch(`${server.url}/console/assets/${asset}`)).status).toBe(200);
    const info = await (await fetch(`${server.url}/console/api/info`)).json();
    expect(info).toEqual({ target: 'deployed', apiUrl: stack.outputs.apiUrl, services: ['inventory', 'payment', 'shipping', 'order', 'silent'], events: false });

    const txId = await stuckTransaction('s-1');
    const overview = (await (await fetch(`${server.url}/console/api/overview`)).json()) as any;
    expect(overview.queues.map((q: { name: string }) => q.name)).toEqual(expect.arrayContaining(['dtc-silent-requests', 'dtc-silent-replies', 'dtc-silent-requests-dlq', 'dtc-replies-dlq']));
    expect(overview.queues.find((q: { name: string }) => q.name === 'dtc-replies-dlq').sources).toHaveLength(5);
    expect(overview.open.total).toBeGreaterThanOrEqual(1);
    const listed = (await (await fetch(`${server.url}/console/api/transactions?participant=silent&status=PREPARING`)).json()) as any;
    expect(listed.items.map((v: { txId: string }) => v.txId)).toContain(txId);

    // The gateway demands SigV4 (DTC_REQUIRE_AUTH=1): the abort reaches it signed with the default chain's credentials.
    const abort = (headers: Record<string, string>, body = '{"reason":"from the server test"}') => fetch(`${server.url}/console/api/transactions/${txId}/abort`, { method: 'POST', headers, body });
    const aborted = await abort({ 'content-type': 'application/json' });
    expect(aborted.status).toBe(202);
    expect(((await aborted.json()) as any).transaction.decision.reason).toContain('from the server test');

    // Only the console's own origin may act, only with JSON, and only under a loopback name.
    expect((await abort({ 'content-type': 'application/json', origin: 'https://elsewhere.example' })).status).toBe(403);
    expect((await abort({ 'content-type': 'text/plain' })).status).toBe(400);
    const rebound = await new Promise<number>((resolve, reject) => {
      http.get(`${server.url}/console/api/overview`, { headers: { host: 'attacker.example' } }, (res) => resolve(res.statusCode ?? 0)).on('error', reject);
    });
    expect(rebound).toBe(403);
    expect((await fetch(`${server.url}/console/api/transactions?status=DONE`)).status).toBe(400);
    expect((await fetch(`${server.url}/console/api/dead-letters?queue=${encodeURIComponent(stack.outputs.participantQueues.silent!)}`)).status).toBe(400);
  });
});
