// A seeded fuzz of POST /transactions on the embedded stack, as a careless (or hostile) client
// would send: random mutations of valid bodies and headers — wrong types, huge or odd numbers
// (1e308, 1e400, -0, 2^53+1), NaN-ish strings, deep nesting, unicode (emoji, bidi and zero-width
// characters, noncharacters, lone surrogates, NUL), missing and extra fields, duplicate keys, huge
// strings up to and past the 256 KiB limit, broken JSON and bytes that are not UTF-8, and bad
// Idempotency-Key, Prefer and Content-Type headers. Never a 5xx; a rejected request (4xx) leaves
// the log table exactly as it was (its item count, read consistently, before and after).
// DTC_FUZZ_SEED=<n> replays a run; DTC_FUZZ_REQUESTS sets its length.
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createRandom, type Random } from '../../src/core/random';
import { MAX_BODY_BYTES } from '../../src/core/transaction';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../src/local/aws-env';
import { signedHeaders } from '../../src/local/sigv4';
import { startHarness, type Harness } from './harness';

const SEED = Number(process.env.DTC_FUZZ_SEED ?? 20261130);
const REQUESTS = Number(process.env.DTC_FUZZ_REQUESTS ?? 300);

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
});

afterAll(async () => {
  await h?.stop();
});

/** JSON text that is emitted as is (number literals JSON.stringify cannot write, duplicate keys, deep nesting). */
class Raw {
  constructor(readonly text: string) {}
}
type Json = null | boolean | number | string | Raw | Json[] | { [key: string]: Json };

/** JSON text of `value`; Raw nodes verbatim. Recursive, but fuzzed trees stay shallow (deep nesting is Raw). */
function emit(value: Json): string {
  if (value instanceof Raw) return value.text;
  if (Array.isArray(value)) return `[${value.map(emit).join(',')}]`;
  if (value !== null && typeof value === 'object') return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}:${emit(v)}`).join(',')}}`;
  return JSON.stringify(value);
}

const NUMBERS = ['1e308', '1e400', '-1e400', '-0', '0', '-1', '1.5', '0.1', '1e-400', '9007199254740993', '123456789012345678901234567890', '2147483648', '10', '900', '901', '3600', '3601', '1E2'];
const STRINGS = [
  '',
  ' ',
  'NaN',
  'Infinity',
  '-Infinity',
  '1e308',
  '0x10',
  ' 10 ',
  'null',
  'é',
  '😀😀',
  '\u202eevil',
  'zero\u200bwidth',
  '\ufffe',
  'a\uffffb',
  '\ud800',
  'nul\u0000here',
  'Ω≈ç√∫',
  '\\',
  '"',
  '../../etc/passwd',
  '<script>alert(1)</script>',
  '%00',
  ' inventory',
  'INVENTORY',
  'inventory',
  'payment',
  'ghost',
  'sku/sku-70',
  'a'.repeat(64),
  'a'.repeat(300),
];
const KEYS = ['participants', 'service', 'operation', 'resources', 'timeouts', 'prepareSeconds', 'commitSeconds', 'items', 'sku', 'quantity', 'account', 'amount', '__proto__', 'constructor', '', 'é', 'extra'];

function weird(rng: Random, depth = 0): Json {
  switch (rng.int(0, 9)) {
    case 0:
      return new Raw(rng.pick(NUMBERS));
    case 1:
      return rng.pick(STRINGS);
    case 2:
      return rng.pick([true, false, null]);
    case 3:
      return depth > 2 ? [] : Array.from({ length: rng.int(0, 3) }, () => weird(rng, depth + 1));
    case 4:
      return depth > 2 ? {} : Object.fromEntries(Array.from({ length: rng.int(0, 3) }, () => [rng.pick(KEYS), weird(rng, depth + 1)]));
    case 5: {
      // Deep nesting, as text.
      const d = rng.pick([10, 33, 100, 1_000, 5_000, 20_000, 60_000]);
      const [open, close] = rng.chance(0.5) ? ['[', ']'] : ['{"a":', '}'];
      return new Raw(`${open.repeat(d)}${rng.chance(0.5) ? '1' : '[]'}${close.repeat(d)}`);
    }
    case 6:
      // A huge string: near, at and past what the 256 KiB body leaves room for.
      return 'x'.repeat(rng.pick([10_000, 100_000, 200_000, MAX_BODY_BYTES - 400, MAX_BODY_BYTES - 200, MAX_BODY_BYTES - 100, MAX_BODY_BYTES]));
    case 7:
      return rng.int(-1_000_000, 1_000_000);
    case 8:
      return new Raw(`"${'\\u0000'.repeat(rng.int(1, 5))}"`);
    default:
      return rng.pick(STRINGS).repeat(rng.int(1, 50));
  }
}

let orders = 0;
function validBody(rng: Random): Json {
  const orderId = `fz-${SEED}-${++orders}`;
  const sku = `sku-${rng.int(60, 69)}`;
  const items = [{ sku, quantity: rng.int(1, 3) }];
  switch (rng.int(0, 3)) {
    case 0:
      return {
        participants: [
          { service: 'inventory', operation: { items } },
          { service: 'payment', operation: { account: `acct-${rng.int(60, 69)}`, amount: rng.int(1, 500) } },
          { service: 'shipping', operation: { orderId, address: '1 Fuzz St' } },
          { service: 'order', operation: { orderId, items, total: 10 } },
        ],
      };
    case 1:
      return { participants: [{ service: 'payment', operation: { account: 'acct-61', amount: 5 } }], timeouts: { prepareSeconds: 5, commitSeconds: 5 } };
    case 2:
      return { participants: [{ service: 'inventory', operation: { items }, resources: [`sku/${sku}`] }], timeouts: { prepareSeconds: 10 } };
    default:
      return { participants: [{ service: 'order', operation: { orderId, items, total: 1 } }, { service: 'shipping', operation: { orderId, address: 'x' } }] };
  }
}

/** Every container node of `value` with the path to it (iterative). */
function containers(value: Json): { node: Json[] | { [key: string]: Json }; path: string }[] {
  const found: { node: Json[] | { [key: string]: Json }; path: string }[] = [];
  const stack: { node: Json; path: string }[] = [{ node: value, path: '' }];
  while (stack.length > 0) {
    const { node, path } = stack.pop()!;
    if (node === null || typeof node !== 'object' || node instanceof Raw) continue;
    found.push({ node, path });
    for (const [k, v] of Object.entries(node)) stack.push({ node: v, path: `${path}.${k}` });
  }
  return found;
}

/** An own property, whatever the key (`__proto__` included: a plain assignment would set the prototype). */
function put(node: Json[] | { [key: string]: Json }, key: string, value: Json): void {
  Object.defineProperty(node, key, { value, enumerable: true, writable: true, configurable: true });
}

interface FuzzRequest {
  what: string[];
  body: string | Uint8Array;
  headers: Record<string, string>;
}

function mutate(rng: Random): FuzzRequest {
  const body = validBody(rng);
  const what: string[] = [];
  const rounds = rng.int(0, 3);
  for (let r = 0; r < rounds; r++) {
    const targets = containers(body);
    const { node, path } = rng.pick(targets);
    const keys = Object.keys(node);
    switch (rng.int(0, 3)) {
      case 0: {
        if (keys.length === 0) break;
        const key = rng.pick(keys);
        put(node, key, weird(rng));
        what.push(`set ${path}.${key}`);
        break;
      }
      case 1: {
        if (keys.length === 0) break;
        const key = rng.pick(keys);
        if (Array.isArray(node)) node.splice(Number(key), 1);
        else delete node[key];
        what.push(`delete ${path}.${key}`);
        break;
      }
      case 2: {
        const key = Array.isArray(node) ? String(node.length) : rng.pick(KEYS);
        put(node, key, weird(rng));
        what.push(`add ${path}.${key}`);
        break;
      }
      default: {
        // Many participants (the limit is 25), each a copy.
        const participants = (body as { participants?: Json }).participants;
        if (Array.isArray(participants) && participants.length > 0) {
          const n = rng.pick([2, 25, 26, 100]);
          while (participants.length < n) participants.push(structuredClone(participants[0]!));
          what.push(`participants x${n}`);
        }
      }
    }
  }
  let text = emit(body);
  let bytes: string | Uint8Array = text;
  switch (rng.int(0, 14)) {
    case 0:
      text = text.slice(0, rng.int(0, text.length));
      bytes = text;
      what.push('truncated');
      break;
    case 1:
      bytes = emit(weird(rng));
      what.push('replaced by a value');
      break;
    case 2:
      bytes = text.replace('{', '{"participants":[],');
      what.push('duplicate key');
      break;
    case 3: {
      const raw = Buffer.from(text);
      raw[rng.int(0, raw.length - 1)] = 0xff;
      bytes = new Uint8Array(raw);
      what.push('a byte that is not UTF-8');
      break;
    }
    case 4:
      bytes = '';
      what.push('empty');
      break;
    default:
  }
  const headers: Record<string, string> = {};
  if (rng.chance(0.85)) headers['content-type'] = rng.chance(0.9) ? 'application/json' : rng.pick(['text/plain', 'application/json; charset=latin1', 'application/x-www-form-urlencoded']);
  if (rng.chance(0.3)) {
    headers['idempotency-key'] = rng.pick(['k', ' ', 'x'.repeat(128), 'x'.repeat(129), 'caf\u00e9', 'a b', 'key\t1', `fz-${SEED}-${rng.int(1, 5)}`, `fz-${SEED}-${rng.int(1, 1_000_000)}`]);
    what.push(`Idempotency-Key ${JSON.stringify(headers['idempotency-key'].slice(0, 20))}`);
  }
  if (rng.chance(0.15)) {
    headers.prefer = rng.pick(['wait=0', 'wait=1', 'wait=abc', 'wait=-1', 'wait=1e3', 'wait=99999999999999999999', 'respond-async', 'wait=1, respond-async', 'handling=lenient', 'wait', 'wait=\u00e9']);
    what.push(`Prefer ${JSON.stringify(headers.prefer)}`);
  }
  return { what, body: bytes, headers };
}

async function logItems(): Promise<number> {
  let count = 0;
  let ExclusiveStartKey: Record<string, never> | undefined;
  do {
    const out = await h.stack.dynamodb.send(new ScanCommand({ TableName: h.stack.outputs.txTable, Select: 'COUNT', ConsistentRead: true, ...(ExclusiveStartKey ? { ExclusiveStartKey } : {}) }));
    count += out.Count ?? 0;
    ExclusiveStartKey = out.LastEvaluatedKey as typeof ExclusiveStartKey;
  } while (ExclusiveStartKey);
  return count;
}

it(`${REQUESTS} mutated requests (seed ${SEED}): never a 5xx, and a rejected one writes nothing`, async () => {
  const rng = createRandom(SEED);
  const problems: string[] = [];
  const statuses = new Map<number, number>();
  // Only this test's requests create items (the requests run one at a time; what accepted ones go on
  // to do only updates their items), so the count after one request is the count before the next.
  let before = await logItems();
  for (let i = 0; i < REQUESTS; i++) {
    const req = mutate(rng);
    const url = new URL(`${h.apiUrl}/transactions`);
    // With DTC_REQUIRE_AUTH=1 the gateway checks signatures: sign what can be signed (a body of bytes that are not UTF-8 goes unsigned: a 4xx either way).
    const headers = h.stack.api.auth && typeof req.body === 'string' ? await signedHeaders({ method: 'POST', url, headers: req.headers, body: req.body }, LOCAL_CREDENTIALS, LOCAL_REGION) : req.headers;
    const res = await fetch(url, { method: 'POST', headers, body: req.body });
    const text = await res.text();
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    const describe = `#${i} [${req.what.join('; ') || 'valid'}] -> ${res.status} ${text.slice(0, 200)}`;
    const after = await logItems();
    if (res.status >= 500) {
      problems.push(describe);
      before = after;
      continue;
    }
    if (res.status >= 400) {
      let body: { error?: { code?: unknown }; message?: unknown } | undefined;
      try {
        body = JSON.parse(text) as typeof body;
      } catch {
        body = undefined;
      }
      // The function's answers carry an error code; the gateway's own (a body past its 10 MB) a message, as API Gateway's do.
      if (typeof body?.error?.code !== 'string' && typeof body?.message !== 'string') problems.push(`${describe}: no error code`);
      if (after !== before) problems.push(`${describe}: the log table went from ${before} to ${after} items`);
    } else if (res.status !== 200 && res.status !== 202) {
      problems.push(`${describe}: unexpected status`);
    }
    before = after;
  }
  console.log(`[fuzz] seed ${SEED}: ${REQUESTS} requests, statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
  expect(problems, `reproduce: DTC_FUZZ_SEED=${SEED} npx vitest run test/e2e/fuzz.test.ts`).toEqual([]);
  // The run is worth something only if both sides were exercised.
  expect((statuses.get(202) ?? 0) + (statuses.get(200) ?? 0)).toBeGreaterThan(REQUESTS / 10);
  expect([...statuses].filter(([s]) => s >= 400 && s < 500).reduce((n, [, c]) => n + c, 0)).toBeGreaterThan(REQUESTS / 4);
}, 600_000);
