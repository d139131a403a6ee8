// SigV4 for the API (service `execute-api`): signing, for clients and the tests' harness, and
// verification, for the embedded gateway when DTC_REQUIRE_AUTH=1. Verification re-signs the request
// with the same credentials and compares signatures: the signer is AWS's own (@smithy/signature-v4),
// so both sides share one canonicalization.
import { createHash, createHmac, timingSafeEqual, type Hash, type Hmac } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import type { HttpRequest, SourceData } from '@smithy/types';

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

const SERVICE = 'execute-api';
/** AWS rejects signatures dated more than 15 minutes from its clock. */
export const MAX_SKEW_MS = 15 * 60 * 1000;
const ALGORITHM = 'AWS4-HMAC-SHA256';

function bytes(data: SourceData): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** SHA-256 and HMAC-SHA-256 over node:crypto, in the shape the signer takes. */
export class Sha256 {
  private readonly hash: Hash | Hmac;
  constructor(secret?: SourceData) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: SourceData): void {
    this.hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
}

const signer = (credentials: Credentials, region: string, applyChecksum: boolean) =>
  new SignatureV4({ credentials, region, service: SERVICE, sha256: Sha256, applyChecksum });

export interface RequestToSign {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  body?: string;
}

/**
 * Sign a request to the API as `aws --sigv4` or awscurl would: host, x-amz-date and the body's
 * hash are signed. Returns the headers to send (host excluded: fetch sets it from the URL).
 */
export async function signedHeaders(request: RequestToSign, credentials: Credentials, region: string, now = new Date()): Promise<Record<string, string>> {
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of request.url.searchParams) {
    const prev = query[k];
    query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  const headers: Record<string, string> = { ...lower(request.headers ?? {}), host: request.url.host };
  const signed = await signer(credentials, region, true).sign(
    {
      method: request.method,
      protocol: request.url.protocol,
      hostname: request.url.hostname,
      path: request.url.pathname,
      query,
      headers,
      ...(request.body === undefined ? {} : { body: request.body }),
    } as HttpRequest,
    { signingDate: now },
  );
  const { host: _host, ...out } = signed.headers;
  return out;
}

function lower(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

export interface ReceivedRequest {
  method: string;
  /** The path as sent, still percent-encoded, without the query string. */
  rawPath: string;
  query: URLSearchParams;
  /** Lower-cased names. */
  headers: Record<string, string | undefined>;
  body: Buffer;
}

export type Verdict =
  | { ok: true; accessKeyId: string }
  | { ok: false; errorType: string; message: string };

const AUTH = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;_.-]+),\s*Signature=([0-9a-f]{64})$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

const mismatch: Verdict = {
  ok: false,
  errorType: 'InvalidSignatureException',
  message:
    'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
};

/** Check a request's SigV4 Authorization header against one set of credentials, as API Gateway would. */
export async function verifySigV4(req: ReceivedRequest, credentials: Credentials, region: string, nowMs: number): Promise<Verdict> {
  const header = req.headers.authorization;
  if (!header) return { ok: false, errorType: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' };
  const m = AUTH.exec(header.trim());
  if (!m) {
    return { ok: false, errorType: 'IncompleteSignatureException', message: `Authorization header must be ${ALGORITHM} Credential=..., SignedHeaders=..., Signature=...` };
  }
  const [, accessKeyId, scopeDate, scopeRegion, scopeService, signedList, signature] = m as unknown as [string, string, string, string, string, string, string];
  if (accessKeyId !== credentials.accessKeyId) {
    return { ok: false, errorType: 'UnrecognizedClientException', message: 'The security token included in the request is invalid.' };
  }
  if (scopeService !== SERVICE || scopeRegion !== region) {
    return { ok: false, errorType: 'InvalidSignatureException', message: `Credential should be scoped to region '${region}' and service '${SERVICE}'.` };
  }
  const amzDate = req.headers['x-amz-date'] ?? '';
  const d = AMZ_DATE.exec(amzDate);
  if (!d || !amzDate.startsWith(scopeDate)) {
    return { ok: false, errorType: 'IncompleteSignatureException', message: 'X-Amz-Date must be present, in yyyyMMddTHHmmssZ form, on the credential scope date.' };
  }
  const signingDate = new Date(Date.UTC(+d[1]!, +d[2]! - 1, +d[3]!, +d[4]!, +d[5]!, +d[6]!));
  if (Math.abs(nowMs - signingDate.getTime()) > MAX_SKEW_MS) {
    return { ok: false, errorType: 'InvalidSignatureException', message: `Signature expired: ${amzDate} is more than 15 minutes from the server's time.` };
  }
  const names = signedList.split(';');
  if (!names.includes('host') || !names.includes('x-amz-date')) {
    return { ok: false, errorType: 'IncompleteSignatureException', message: 'SignedHeaders must include host and x-amz-date.' };
  }
  // A signed body hash must be the body's: the signer would otherwise trust the header.
  const claimedHash = req.headers['x-amz-content-sha256'];
  if (claimedHash !== undefined && claimedHash !== createHash('sha256').update(req.body).digest('hex')) return mismatch;

  const headers: Record<string, string> = {};
  for (const name of names) {
    const value = req.headers[name];
    if (value === undefined) return mismatch;
    headers[name] = value;
  }
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of req.query) {
    const prev = query[k];
    query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  const resigned = await signer({ ...credentials, ...(headers['x-amz-security-token'] ? { sessionToken: headers['x-amz-security-token'] } : {}) }, region, false).sign(
    {
      method: req.method,
      protocol: 'http:',
      hostname: (headers.host ?? '').split(':')[0] ?? '',
      path: req.rawPath,
      query,
      headers,
      body: req.body,
    } as HttpRequest,
    { signingDate },
  );
  const expected = /Signature=([0-9a-f]{64})$/.exec(String(resigned.headers.authorization))?.[1] ?? '';
  const same = expected.length === signature.length && timingSafeEqual(Buffer.from(expected), Buffer.from(signature));
  return same ? { ok: true, accessKeyId } : mismatch;
}
