// The DSL's two interpreters agree: a condition rendered by `toDynamo` and run by DynamoDB (dynalite,
// through the DynamoDB document client, as the TxLog adapter runs it) holds exactly when `evaluate`
// says so over the same item, for random items and conditions, attribute-against-attribute
// comparisons (`attr()`, the commit point's `ok = req`) and nested map paths included; and an update
// rendered by `toDynamo` leaves the item `apply` computes.
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { documentClient } from '../../src/aws/document-client';
import { add, and, apply, attr, eq, evaluate, exists, ge, gt, le, lt, notExists, or, remove, set, toDynamo, type Condition, type Path, type Update } from '../../src/core/log-dsl';
import { startLocalAws, type LocalAws } from '../support/aws';

let aws: LocalAws;
let doc: DynamoDBDocumentClient;
let table: string;

beforeAll(async () => {
  aws = await startLocalAws({ tables: ['log'] });
  doc = documentClient(aws.dynamodb);
  table = aws.tables.log;
});
afterAll(async () => {
  await aws?.stop();
});

// Attribute names the log table does not use as index keys (lp, og, createdAt, prepareDeadlineAt).
const scalar = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom(0.5, -1.25, 1e6), fc.constantFrom('a', 'b', 'ab', 'B', '2026-01-01T00:00:00.000Z'));
// ok, req and s are always there (as the log's ok and req are, from create on); m's keys may be absent.
const item = fc.record({
  ok: scalar,
  req: scalar,
  s: scalar,
  m: fc.record({ k: scalar, 'x-y': scalar }, { requiredKeys: [] }),
});
/** Paths that are always present. */
const PRESENT = new Set(['"ok"', '"req"', '"s"']);
const path: fc.Arbitrary<Path> = fc.constantFrom<Path>('ok', 'req', 's', 'missing', ['m', 'k'], ['m', 'x-y'], ['m', 'none']);
const comparison = fc.constantFrom(eq, lt, le, gt, ge);
const leaf: fc.Arbitrary<Condition> = fc.oneof(
  // DynamoDB refuses an attribute compared with itself (a ValidationException): two distinct paths.
  // One of them always present: dynalite answers true for two absent operands, where `evaluate`
  // answers false as for any comparison with an absent operand (the log never compares two
  // attributes that may be absent: ok and req are written at create).
  {
    weight: 3,
    arbitrary: fc
      .tuple(comparison, path, path)
      .filter(([, a, b]) => JSON.stringify(a) !== JSON.stringify(b) && (PRESENT.has(JSON.stringify(a)) || PRESENT.has(JSON.stringify(b))))
      .map(([c, a, b]) => c(a, attr(b))),
  },
  { weight: 2, arbitrary: fc.tuple(comparison, path, scalar).map(([c, a, v]) => c(a, v)) },
  path.map(exists),
  path.map(notExists),
);
const condition: fc.Arbitrary<Condition> = fc.letrec<{ c: Condition }>((tie) => ({
  c: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('c'), { minLength: 1, maxLength: 3 }).map((of) => and(...of)),
    fc.array(tie('c'), { minLength: 1, maxLength: 3 }).map((of) => or(...of)),
  ),
})).c;

let n = 0;
/** The item stored, then the conditional update: applied or refused by DynamoDB. */
async function dynamo(stored: Record<string, unknown>, c: Condition, update: readonly Update[]): Promise<{ applied: boolean; after: Record<string, unknown> | undefined }> {
  const pk = `dsl-${++n}`;
  await doc.send(new PutCommand({ TableName: table, Item: { pk, ...stored } }));
  let applied = true;
  try {
    await doc.send(new UpdateCommand({ TableName: table, Key: { pk }, ...toDynamo(c, update) }));
  } catch (err) {
    if (!(err instanceof ConditionalCheckFailedException)) throw err;
    applied = false;
  }
  const out = await doc.send(new GetCommand({ TableName: table, Key: { pk }, ConsistentRead: true }));
  const { pk: _pk, ...after } = out.Item ?? {};
  return { applied, after };
}

describe('toDynamo on DynamoDB and evaluate/apply in memory', () => {
  it('property: agree on whether a condition holds, attribute against attribute included', async () => {
    let held = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(item, condition, async (stored, c) => {
        const { applied, after } = await dynamo(stored, c, [set('mark', 1)]);
        const expected = evaluate(c, stored);
        expect({ condition: toDynamo(c).ConditionExpression, applied }).toEqual({ condition: toDynamo(c).ConditionExpression, applied: expected });
        expect(after).toEqual(expected ? { ...stored, mark: 1 } : stored);
        if (expected) held++;
        else refused++;
      }),
      { numRuns: 300, seed: 20261128 },
    );
    // Both answers are common, so the agreement means something.
    expect(Math.min(held, refused)).toBeGreaterThan(50);
  });

  it("agrees on the commit point's comparison of the record's own counts", async () => {
    const commit = and(exists('pk'), eq('ok', attr('req')));
    const shortOf = and(exists('pk'), lt('ok', attr('req')));
    for (const [ok, req] of [
      [0, 2],
      [1, 2],
      [2, 2],
      [3, 2],
    ] as const) {
      const stored = { ok, req };
      // `exists('pk')` holds in DynamoDB (the key) and is given to evaluate explicitly.
      expect((await dynamo(stored, commit, [set('status', 'COMMITTING')])).applied).toBe(evaluate(commit, { pk: 'x', ...stored }));
      expect((await dynamo(stored, shortOf, [set('status', 'ABORTING')])).applied).toBe(evaluate(shortOf, { pk: 'x', ...stored }));
      expect(evaluate(commit, { pk: 'x', ...stored })).toBe(ok === req);
    }
  });

  it('property: leave the same item after an update (SET, REMOVE, ADD, nested paths)', async () => {
    const update: fc.Arbitrary<Update[]> = fc
      .uniqueArray(
        fc.oneof(
          fc.tuple(fc.constantFrom<Path>('ok', 's', 'fresh', ['m', 'k'], ['m', 'new-key']), scalar).map(([p, v]) => set(p, v)),
          fc.constantFrom<Path>('s', 'absent', ['m', 'x-y']).map(remove),
          fc.constantFrom<Path>('counter', 'req').map((p) => add(p, 1)),
        ),
        // DynamoDB refuses two actions on one path in one update.
        { minLength: 1, maxLength: 4, selector: (u) => JSON.stringify(u.path) },
      )
      .filter((us) => {
        const paths = us.map((u) => JSON.stringify(u.path));
        // ...and on a path and its parent in one update.
        return !paths.some((p) => paths.some((q) => q !== p && p.startsWith(q.slice(0, -1))));
      });
    const base = fc.record({ ok: scalar, s: scalar, req: fc.integer({ min: 0, max: 5 }), m: fc.record({ k: scalar, 'x-y': scalar }) });
    await fc.assert(
      fc.asyncProperty(base, update, async (stored, u) => {
        const { applied, after } = await dynamo(stored, exists('m'), u);
        expect(applied).toBe(true);
        expect(after).toEqual(apply(u, stored));
      }),
      { numRuns: 100, seed: 3 },
    );
  });
});
