// The embedded gateway's SigV4 check (DTC_REQUIRE_AUTH=1): AWS_IAM routes answer 403 to what the
// deployed API would refuse, and pass signed requests through with the caller's identity.
import { createHash, createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authFromEnv, LocalApiGateway } from '../../src/local/apigateway';
import { LOCAL_CREDENTIALS, LOCAL_REGION } from '../../src/local/aws-env';
import { signedHeaders, type Credentials } from '../../src/local/sigv4';

const NOW = Date.parse('2026-11-27T12:00:00Z');
let gateway: LocalApiGateway;
let base: string;

beforeAll(async () => {
  gateway = new LocalApiGateway({ auth: { credentials: LOCAL_CREDENTIALS, region: LOCAL_REGION, now: () => NOW } });
  gateway.setStage('v1');
  const echo = async (event: Parameters<Parameters<LocalApiGateway['addRoute']>[0]['invoke']>[0]) => ({
    statusCode: 200,
    body: JSON.stringify({ caller: event.requestContext.identity.caller, userArn: event.requestContext.identity.userArn, body: event.body, query: event.queryStringParameters }),
  });
  gateway.addRoute({ method: 'POST', resource: '/transactions', authorizationType: 'AWS_IAM', invoke: echo });
  gateway.addRoute({ method: 'GET', resource: '/transactions/{id}', authorizationType: 'AWS_IAM', invoke: echo });
  gateway.addRoute({ method: 'GET', resource: '/demo/totals', invoke: echo });
  base = await gateway.listen(0);
});

afterAll(async () => {
  await gateway?.stop();
});

const body = JSON.stringify({ participants: [{ service: 'inventory' }] });

async function send(method: string, path: string, headers: Record<string, string>, payload?: string) {
  const res = await fetch(`${base}${path}`, { method, headers, ...(payload === undefined ? {} : { body: payload }) });
  return { status: res.status, errorType: res.headers.get('x-amzn-errortype'), body: (await res.json()) as Record<string, unknown> };
}

const sign = (method: string, path: string, payload: string | undefined, credentials: Credentials = LOCAL_CREDENTIALS, at = new Date(NOW)) =>
  signedHeaders({ method, url: new URL(`${base}${path}`), headers: { 'content-type': 'application/json' }, ...(payload === undefined ? {} : { body: payload }) }, credentials, LOCAL_REGION, at);

describe('with DTC_REQUIRE_AUTH on', () => {
  it('refuses an unsigned request to an AWS_IAM route, as API Gateway does', async () => {
    const res = await send('POST', '/transactions', { 'content-type': 'application/json' }, body);
    expect(res).toEqual({ status: 403, errorType: 'MissingAuthenticationTokenException', body: { message: 'Missing Authentication Token' } });
  });

  it('passes a request signed with the local credentials, with the caller in the event', async () => {
    const res = await send('POST', '/transactions', await sign('POST', '/transactions', body), body);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ caller: 'local', userArn: 'arn:aws:iam::000000000000:user/local', body, query: null });
  });

  it('passes a signed GET with the stage in the path and a repeated query parameter', async () => {
    const path = '/v1/transactions/tx-12345678?b=2&a=1&a=0';
    const res = await send('GET', path, await sign('GET', path, undefined));
    expect(res.status).toBe(200);
    expect(res.body.query).toEqual({ a: '0', b: '2' });
  });

  it('refuses a wrong secret, an unknown key, a changed body, a changed path and an old signature', async () => {
    const wrongSecret = await sign('POST', '/transactions', body, { accessKeyId: 'local', secretAccessKey: 'other' });
    expect(await send('POST', '/transactions', wrongSecret, body)).toMatchObject({ status: 403, errorType: 'InvalidSignatureException' });

    const unknownKey = await sign('POST', '/transactions', body, { accessKeyId: 'AKIDOTHER', secretAccessKey: 'local' });
    expect(await send('POST', '/transactions', unknownKey, body)).toMatchObject({ status: 403, errorType: 'UnrecognizedClientException' });

    const signed = await sign('POST', '/transactions', body);
    expect(await send('POST', '/transactions', signed, body.replace('inventory', 'payment'))).toMatchObject({ status: 403, errorType: 'InvalidSignatureException' });
    const { 'x-amz-content-sha256': _hash, ...withoutHash } = signed;
    expect(await send('POST', '/transactions', withoutHash, body.replace('inventory', 'payment'))).toMatchObject({ status: 403, errorType: 'InvalidSignatureException' });

    const forOne = await sign('GET', '/transactions/tx-11111111', undefined);
    expect(await send('GET', '/transactions/tx-22222222', forOne)).toMatchObject({ status: 403, errorType: 'InvalidSignatureException' });

    const old = await sign('POST', '/transactions', body, LOCAL_CREDENTIALS, new Date(NOW - 16 * 60_000));
    const res = await send('POST', '/transactions', old, body);
    expect(res).toMatchObject({ status: 403, errorType: 'InvalidSignatureException' });
    expect(res.body.message).toMatch(/^Signature expired/);
  });

  it('accepts a signature made by an independent implementation of the SigV4 spec', async () => {
    // Canonical request -> string to sign -> HMAC chain, written out from AWS's documentation.
    const amzDate = '20261127T120000Z';
    const host = new URL(base).host;
    const path = '/v1/transactions/tx-12345678';
    const query = 'limit=2';
    const payloadHash = createHash('sha256').update('').digest('hex');
    const canonical = ['GET', path, query, `host:${host}`, `x-amz-date:${amzDate}`, '', 'host;x-amz-date', payloadHash].join('\n');
    const scope = `20261127/${LOCAL_REGION}/execute-api/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
    const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
    let key = hmac(`AWS4${LOCAL_CREDENTIALS.secretAccessKey}`, '20261127');
    for (const part of [LOCAL_REGION, 'execute-api', 'aws4_request']) key = hmac(key, part);
    const signature = createHmac('sha256', key).update(toSign).digest('hex');
    const authorization = `AWS4-HMAC-SHA256 Credential=${LOCAL_CREDENTIALS.accessKeyId}/${scope}, SignedHeaders=host;x-amz-date, Signature=${signature}`;
    expect((await send('GET', `${path}?${query}`, { 'x-amz-date': amzDate, authorization })).status).toBe(200);
    expect((await send('GET', `${path}?limit=3`, { 'x-amz-date': amzDate, authorization })).status).toBe(403);
  });

  it('leaves routes without IAM authorization open (the demo views)', async () => {
    expect((await send('GET', '/demo/totals', {})).status).toBe(200);
  });
});

describe('the DTC_REQUIRE_AUTH setting', () => {
  it('is off unless set, and refuses a value it does not understand', () => {
    expect(authFromEnv({})).toBeUndefined();
    expect(authFromEnv({ DTC_REQUIRE_AUTH: '0' })).toBeUndefined();
    expect(authFromEnv({ DTC_REQUIRE_AUTH: '1' })).toEqual({ credentials: LOCAL_CREDENTIALS, region: LOCAL_REGION });
    expect(authFromEnv({ DTC_REQUIRE_AUTH: 'true' })?.credentials.accessKeyId).toBe('local');
    expect(() => authFromEnv({ DTC_REQUIRE_AUTH: 'yes' })).toThrow(/DTC_REQUIRE_AUTH must be 1\/true or 0\/false, got 'yes'/);
  });

  it('lets unsigned requests through when off, as local emulators do', async () => {
    const open = new LocalApiGateway({ auth: false });
    open.addRoute({ method: 'POST', resource: '/transactions', authorizationType: 'AWS_IAM', invoke: async () => ({ statusCode: 202, body: '{}' }) });
    const url = await open.listen(0);
    try {
      expect((await fetch(`${url}/transactions`, { method: 'POST', body })).status).toBe(202);
    } finally {
      await open.stop();
    }
  });
});
