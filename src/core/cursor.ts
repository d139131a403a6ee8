// Opaque page cursors for the API: a DynamoDB LastEvaluatedKey, base64url-encoded JSON.
export class BadCursorError extends Error {
  override name = 'BadCursorError';
}

export function encodeCursor(key: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(key)).toString('base64url');
}

/** The key back; a cursor this API did not hand out (not JSON, not string-valued) is a BadCursorError. */
export function decodeCursor(cursor: string): Record<string, unknown> {
  try {
    const key = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (key && typeof key === 'object' && !Array.isArray(key) && Object.values(key).every((v) => typeof v === 'string')) {
      return key as Record<string, unknown>;
    }
  } catch {
    // fall through
  }
  throw new BadCursorError('cursor is not one this API returned');
}
