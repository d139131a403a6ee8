// API Gateway (REST, Lambda proxy integration) on loopback: the routes come from the template's
// AWS::ApiGateway::Resource/Method tree; requests become the proxy events AWS sends.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { LOCAL_ACCOUNT, LOCAL_CREDENTIALS, LOCAL_REGION } from './aws-env';
import type { Meter } from './meter';
import { verifySigV4, type Credentials } from './sigv4';

/** API Gateway's own payload limit; the function applies the product's smaller one. */
const MAX_PAYLOAD_BYTES = 10 * 1024 * 1024;

export interface Route {
  method: string;
  /** The resource path with `{param}` segments, as in the template, e.g. `/transactions/{id}`. */
  resource: string;
  /** The template method's AuthorizationType; AWS_IAM routes are signature-checked when auth is on. */
  authorizationType?: string;
  invoke(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult>;
}

/**
 * A subtree of paths served by a plain Node handler (the console, the events stream): local
 * additions beside the app's routes, not Lambda proxy integrations, so neither signature-checked
 * nor metered (a console left open must not change what a benchmark counts).
 */
export interface LocalHandler {
  /** `/console` serves `/console` and every path under it. */
  prefix: string;
  serve(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): Promise<void>;
}

/** Signature checking for AWS_IAM routes: the one set of credentials the local stack knows. */
export interface LocalAuth {
  credentials: Credentials;
  region: string;
  now?: () => number;
}

/**
 * Like other local emulators, the gateway does not demand credentials unless told to:
 * DTC_REQUIRE_AUTH=1 (or true) makes AWS_IAM routes answer 403 to a request without a valid
 * SigV4 signature for the local dummy credentials, as the deployed API does for any bad signature.
 */
export function authFromEnv(env: NodeJS.ProcessEnv): LocalAuth | undefined {
  const flag = (env.DTC_REQUIRE_AUTH ?? '').toLowerCase();
  if (flag === '' || flag === '0' || flag === 'false') return undefined;
  if (flag !== '1' && flag !== 'true') throw new Error(`DTC_REQUIRE_AUTH must be 1/true or 0/false, got '${env.DTC_REQUIRE_AUTH}'`);
  return { credentials: LOCAL_CREDENTIALS, region: LOCAL_REGION };
}

export interface LocalApiGatewayOptions {
  /** Signature checking; default from the environment (`authFromEnv`), `false` for none. */
  auth?: LocalAuth | false;
  /** Counts each request that reaches a route past authorization, as `apigateway` METHOD /resource. */
  meter?: Meter;
}

export class LocalApiGateway {
  private readonly routes: Route[] = [];
  private readonly handlers: LocalHandler[] = [];
  private server?: http.Server;
  private stage = 'local';
  readonly auth: LocalAuth | undefined;
  private readonly meter: Meter | undefined;

  constructor(options: LocalApiGatewayOptions = {}) {
    this.auth = options.auth === undefined ? authFromEnv(process.env) : options.auth || undefined;
    this.meter = options.meter;
  }

  addRoute(route: Route): void {
    const clash = this.routes.find((r) => r.method === route.method && r.resource === route.resource);
    if (clash) throw new Error(`two routes for ${route.method} ${route.resource}`);
    this.routes.push(route);
  }

  addHandler(handler: LocalHandler): void {
    if (this.handlers.some((h) => h.prefix === handler.prefix)) throw new Error(`two handlers for ${handler.prefix}`);
    this.handlers.push(handler);
  }

  setStage(stage: string): void {
    this.stage = stage;
  }

  async listen(port: number): Promise<string> {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        console.error(`[apigateway] ${(err as Error).stack ?? String(err)}`);
        if (!res.headersSent) send(res, 502, { 'content-type': 'application/json' }, JSON.stringify({ message: 'Internal server error' }));
      });
    });
    // Keep-alive sockets would hold `stop()` up; clients reconnect cheaply on loopback.
    this.server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    const address = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${address.port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    // Deployed URLs carry the stage (`/v1/transactions`); the local API answers with or without it.
    let pathname = url.pathname.replace(/\/+$/, '') || '/';
    if (pathname.startsWith(`/${this.stage}/`)) pathname = pathname.slice(this.stage.length + 1);
    const method = req.method ?? 'GET';
    const local = this.handlers.find((h) => pathname === h.prefix || pathname.startsWith(`${h.prefix}/`));
    if (local) {
      await local.serve(req, res, pathname);
      return;
    }
    const matched = this.match(method, pathname);
    if (!matched) {
      const anyMethod = this.routes.some((r) => matchPath(r.resource, pathname));
      send(res, anyMethod ? 405 : 404, { 'content-type': 'application/json' }, JSON.stringify({ message: anyMethod ? 'Method not allowed' : 'Not found' }));
      return;
    }
    const body = await readBody(req);
    if (body === 'too-large') {
      send(res, 413, { 'content-type': 'application/json' }, JSON.stringify({ message: 'Request Entity Too Large' }));
      return;
    }
    let caller: string | undefined;
    if (this.auth && matched.route.authorizationType === 'AWS_IAM') {
      const verdict = await verifySigV4(
        { method, rawPath: (req.url ?? '/').split('?')[0]!, query: url.searchParams, headers: singleValued(req.headers), body },
        this.auth.credentials,
        this.auth.region,
        (this.auth.now ?? Date.now)(),
      );
      if (!verdict.ok) {
        send(res, 403, { 'content-type': 'application/json', 'x-amzn-errortype': verdict.errorType }, JSON.stringify({ message: verdict.message }));
        return;
      }
      caller = verdict.accessKeyId;
    }
    this.meter?.count('apigateway', method, matched.route.resource);
    const event = proxyEvent(req, url, pathname, matched.route.resource, matched.params, body, this.stage, caller);
    const result = await matched.route.invoke(event);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(result.headers ?? {})) headers[k] = String(v);
    const payload = result.isBase64Encoded ? Buffer.from(result.body, 'base64') : result.body;
    send(res, result.statusCode, headers, payload);
  }

  private match(method: string, pathname: string): { route: Route; params: Record<string, string> } | undefined {
    for (const route of this.routes) {
      if (route.method !== method && route.method !== 'ANY') continue;
      const params = matchPath(route.resource, pathname);
      if (params) return { route, params };
    }
    return undefined;
  }
}

function matchPath(resource: string, pathname: string): Record<string, string> | undefined {
  const want = resource.split('/').filter(Boolean);
  const got = pathname.split('/').filter(Boolean);
  if (want.length !== got.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const g = decodeURIComponent(got[i]!);
    if (w.startsWith('{') && w.endsWith('}')) params[w.slice(1, -1)] = g;
    else if (w !== g) return undefined;
  }
  return params;
}

async function readBody(req: http.IncomingMessage): Promise<Buffer | 'too-large'> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_PAYLOAD_BYTES) return 'too-large';
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function proxyEvent(
  req: http.IncomingMessage,
  url: URL,
  pathname: string,
  resource: string,
  pathParameters: Record<string, string>,
  body: Buffer,
  stage: string,
  caller?: string,
): APIGatewayProxyEvent {
  const headers: Record<string, string> = {};
  const multiValueHeaders: Record<string, string[]> = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const k = req.rawHeaders[i]!;
    const v = req.rawHeaders[i + 1]!;
    headers[k] = v;
    (multiValueHeaders[k] ??= []).push(v);
  }
  const query: Record<string, string> = {};
  const multiQuery: Record<string, string[]> = {};
  for (const [k, v] of url.searchParams) {
    query[k] = v;
    (multiQuery[k] ??= []).push(v);
  }
  const hasQuery = Object.keys(query).length > 0;
  return {
    resource,
    path: pathname,
    httpMethod: req.method ?? 'GET',
    headers,
    multiValueHeaders,
    queryStringParameters: hasQuery ? query : null,
    multiValueQueryStringParameters: hasQuery ? multiQuery : null,
    pathParameters: Object.keys(pathParameters).length ? pathParameters : null,
    stageVariables: null,
    body: body.length ? body.toString('utf8') : null,
    isBase64Encoded: false,
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      authorizer: undefined,
      protocol: `HTTP/${req.httpVersion}`,
      httpMethod: req.method ?? 'GET',
      identity: {
        accessKey: caller ?? null,
        accountId: caller ? LOCAL_ACCOUNT : null,
        apiKey: null,
        apiKeyId: null,
        caller: caller ?? null,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: req.socket.remoteAddress ?? '127.0.0.1',
        user: caller ?? null,
        userAgent: req.headers['user-agent'] ?? null,
        userArn: caller ? `arn:aws:iam::${LOCAL_ACCOUNT}:user/${caller}` : null,
      },
      path: `/${stage}${pathname}`,
      stage,
      requestId: randomUUID(),
      requestTimeEpoch: Date.now(),
      resourceId: 'local',
      resourcePath: resource,
    },
  };
}

/** Node joins repeated headers with ", " (set-cookie aside, which requests do not sign). */
function singleValued(headers: http.IncomingHttpHeaders): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : v]));
}

function send(res: http.ServerResponse, status: number, headers: Record<string, string>, body: string | Buffer): void {
  res.writeHead(status, headers);
  res.end(body);
}
