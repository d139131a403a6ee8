// Repairs dynalite's secondary indexes after a kill -9. dynalite writes an item's index entries and
// the item itself as separate LevelDB writes (index deletes, index puts, then the item), so a
// process killed in between leaves an index entry for a version of the item that was never
// written (stale), or loses the entry of one that was (missing). Real DynamoDB never does either;
// the recovery sweeper finds open transactions through the `open` index, so the embedded stack
// repairs every index when it starts on existing data, before any handler runs.
//
// dynalite has no way to write an index directly, so the repair goes through the item: writing an
// item makes dynalite delete the entries of the version it replaces and put those of the new one.
import {
  DeleteItemCommand,
  DescribeTableCommand,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  type AttributeValue,
  type DynamoDBClient,
  type KeySchemaElement,
} from '@aws-sdk/client-dynamodb';

type Item = Record<string, AttributeValue>;

/** Pages per scan: far beyond a local table, and still a limit. */
const MAX_PAGES = 10_000;

export interface RepairReport {
  table: string;
  /** Index entries that pointed at a version of an item that does not exist. */
  staleRemoved: number;
  /** Items whose index entry was missing, written again. */
  missingRestored: number;
}

export async function repairIndexes(dynamodb: DynamoDBClient, table: string): Promise<RepairReport> {
  const report: RepairReport = { table, staleRemoved: 0, missingRestored: 0 };
  const described = (await dynamodb.send(new DescribeTableCommand({ TableName: table }))).Table;
  const tableKeys = names(described?.KeySchema);
  const indexes = [...(described?.GlobalSecondaryIndexes ?? []), ...(described?.LocalSecondaryIndexes ?? [])].map((i) => ({
    name: i.IndexName!,
    keys: names(i.KeySchema),
  }));
  if (indexes.length === 0) return report;

  const present = new Map<string, Set<string>>();
  for (const index of indexes) {
    const seen = new Set<string>();
    present.set(index.name, seen);
    for (const entry of await scan(dynamodb, table, index.name)) {
      const base = (await dynamodb.send(new GetItemCommand({ TableName: table, Key: pick(entry, tableKeys), ConsistentRead: true }))).Item;
      if (base && same(pick(base, index.keys), pick(entry, index.keys))) {
        seen.add(keyString(entry, [...index.keys, ...tableKeys]));
        continue;
      }
      // Stale: write a version that carries the entry's index key, then the real one (or delete).
      await dynamodb.send(new PutItemCommand({ TableName: table, Item: { ...(base ?? pick(entry, tableKeys)), ...pick(entry, index.keys) } }));
      if (base) await dynamodb.send(new PutItemCommand({ TableName: table, Item: base }));
      else await dynamodb.send(new DeleteItemCommand({ TableName: table, Key: pick(entry, tableKeys) }));
      report.staleRemoved++;
    }
  }

  for (const item of await scan(dynamodb, table)) {
    const missing = indexes.some((index) => index.keys.every((k) => item[k] !== undefined) && !present.get(index.name)!.has(keyString(item, [...index.keys, ...tableKeys])));
    if (!missing) continue;
    // The same item again: dynalite puts the index entries it computes for it.
    await dynamodb.send(new PutItemCommand({ TableName: table, Item: item }));
    report.missingRestored++;
  }
  return report;
}

function names(schema: KeySchemaElement[] | undefined): string[] {
  return (schema ?? []).map((k) => k.AttributeName!);
}

function pick(item: Item, keys: string[]): Item {
  const out: Item = {};
  for (const k of keys) if (item[k] !== undefined) out[k] = item[k]!;
  return out;
}

function same(a: Item, b: Item): boolean {
  return JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
}

function keyString(item: Item, keys: string[]): string {
  return JSON.stringify(keys.map((k) => item[k] ?? null));
}

async function scan(dynamodb: DynamoDBClient, table: string, indexName?: string): Promise<Item[]> {
  const items: Item[] = [];
  let ExclusiveStartKey: Item | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const out = await dynamodb.send(new ScanCommand({ TableName: table, ...(indexName ? { IndexName: indexName } : { ConsistentRead: true }), ...(ExclusiveStartKey ? { ExclusiveStartKey } : {}) }));
    items.push(...(out.Items ?? []));
    ExclusiveStartKey = out.LastEvaluatedKey;
    if (!ExclusiveStartKey) return items;
  }
  throw new Error(`scan of ${table}${indexName ? `/${indexName}` : ''} did not end within ${MAX_PAGES} pages`);
}
