// API Gateway (REST, Lambda proxy integration) on loopback: the routes come from the template's
// AWS::ApiGateway::Resource/Method tree; requests become the proxy events AWS sends.
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';

/** API Gateway's own payload limit; the function applies the product's smaller one. */
const MAX_PAYLOAD_BYTES = 10 * 1024 * 1024;

export interface Route {
  method: string;
  /** The resource path with `{param}` segments, as in the template, e.g. `/transactions/{id}`. */
  resource: string;
  invoke(event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult>;
}

export class LocalApiGateway {
  private readonly routes: Route[] = [];
  private server?: http.Server;
  private stage = 'local';

  addRoute(route: Route): void {
    const clash = this.routes.find((r) => r.method === route.method && r.resource === route.resource);
    if (clash) throw new Error(`two routes for ${route.method} ${route.resource}`);
    this.routes.push(route);
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
    const event = proxyEvent(req, url, pathname, matched.route.resource, matched.params, body, this.stage);
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
        accessKey: null,
        accountId: null,
        apiKey: null,
        apiKeyId: null,
        caller: null,
        clientCert: null,
        cognitoAuthenticationProvider: null,
        cognitoAuthenticationType: null,
        cognitoIdentityId: null,
        cognitoIdentityPoolId: null,
        principalOrgId: null,
        sourceIp: req.socket.remoteAddress ?? '127.0.0.1',
        user: null,
        userAgent: req.headers['user-agent'] ?? null,
        userArn: null,
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

function send(res: http.ServerResponse, status: number, headers: Record<string, string>, body: string | Buffer): void {
  res.writeHead(status, headers);
  res.end(body);
}
