// Types for dynamodb-billing.mjs (plain JavaScript so the embedded DynamoDB's worker can load it).

/** The wire format of one attribute value: `{ S: 'x' }`, `{ N: '1' }`, `{ M: {...} }` ... */
export type AttributeValue = Record<string, unknown>;
export type Item = Record<string, AttributeValue>;

export interface KeySchemaElement {
  AttributeName: string;
  KeyType: 'HASH' | 'RANGE';
}

export interface IndexDescription {
  IndexName: string;
  KeySchema: KeySchemaElement[];
  Projection?: { ProjectionType?: 'ALL' | 'KEYS_ONLY' | 'INCLUDE'; NonKeyAttributes?: string[] };
}

export interface TableDescription {
  TableName?: string;
  KeySchema: KeySchemaElement[];
  GlobalSecondaryIndexes?: IndexDescription[];
  LocalSecondaryIndexes?: IndexDescription[];
}

export interface WriteCharge {
  /** undefined: the base table. */
  index: string | undefined;
  /** The partition key value written (of the table, or of the index). */
  key: string | undefined;
  writeUnits: number;
}

export const WRITE_UNIT_BYTES: number;
export const READ_UNIT_BYTES: number;
export function numberSize(text: string): number;
export function valueSize(value: AttributeValue): number;
export function itemSize(item: Item | undefined | null): number;
export function writeUnits(...sizes: number[]): number;
export function readUnits(bytes: number, consistent: boolean | undefined): number;
export function partitionKeyValue(item: Item | undefined | null, keySchema: KeySchemaElement[]): string | undefined;
export function secondaryIndexes(table: TableDescription): IndexDescription[];
export function indexEntry(item: Item | undefined | null, table: TableDescription, index: IndexDescription): Item | undefined;
export function sameValue(a: AttributeValue | undefined, b: AttributeValue | undefined): boolean;
export function sameItem(a: Item | undefined, b: Item | undefined): boolean;
export function indexWrites(
  table: TableDescription,
  index: IndexDescription,
  before: Item | undefined | null,
  after: Item | undefined | null,
): { kind: 'put' | 'delete' | 'update'; key: string | undefined; writeUnits: number }[];
export function writeCharges(table: TableDescription, before: Item | undefined | null, after: Item | undefined | null, options?: { transactional?: boolean; key?: Item }): WriteCharge[];
export function failedWriteCharges(table: TableDescription, existing: Item | undefined | null, attempted: Item | undefined | null, key?: Item): WriteCharge[];
export function conditionCheckCharges(table: TableDescription, existing: Item | undefined | null, key?: Item): WriteCharge[];
export function transactionalReadUnits(item: Item | undefined | null): number;
export function plainItem(item: Item | undefined | null): Record<string, string | boolean>;
