// The local dashboard: one static page on the local API (`/dashboard`) that reads the public API
// (transactions, deadlocks) and the demo shop's totals, plus `/local/stats` with the emulators'
// counters (state transitions, callbacks, Lambda invocations, requests by operation).
import { readFile } from 'node:fs/promises';
import type { LocalStack } from './stack';

const json = (body: unknown) => ({ statusCode: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

export async function addDashboard(stack: LocalStack): Promise<void> {
  const html = await readFile(new URL('./dashboard.html', import.meta.url), 'utf8');
  stack.api.addRoute({
    method: 'GET',
    resource: '/dashboard',
    invoke: async () => ({ statusCode: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body: html }),
  });
  stack.api.addRoute({
    method: 'GET',
    resource: '/local/stats',
    invoke: async () => {
      const requests: Record<string, number> = {};
      for (const row of stack.meter.snapshot()) {
        const key = `${row.service}.${row.operation}`;
        requests[key] = (requests[key] ?? 0) + row.count;
      }
      return json({ stepFunctions: stack.stepFunctions.stats(), lambda: stack.lambda.stats, requests });
    },
  });
}
