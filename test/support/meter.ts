// What the embedded stack's meter charged, as the DynamoDB metering tests read it. Not a test file
// (and apart from fixtures.ts, which scripts outside vitest import: this one imports vitest).
import { expect, vi } from 'vitest';
import type { DynamoUnitsRow, Meter } from '../../src/local/meter';

/**
 * The DynamoDB units `meter` charged since `before`, by `label(row)` (rows it labels undefined are
 * left out), once at least `rows` labels have some: the embedded DynamoDB's charges travel apart
 * from its responses.
 */
export async function unitsChargedSince(
  meter: Meter,
  before: DynamoUnitsRow[],
  rows: number,
  label: (row: DynamoUnitsRow) => string | undefined,
): Promise<Map<string, { w: number; r: number }>> {
  const diff = () => {
    const out = new Map<string, { w: number; r: number }>();
    for (const row of meter.reading().dynamodb) {
      const name = label(row);
      if (name === undefined) continue;
      const prev = before.find((b) => b.table === row.table && b.index === row.index && b.key === row.key);
      const w = row.writeUnits - (prev?.writeUnits ?? 0);
      const r = row.readUnits - (prev?.readUnits ?? 0);
      if (w || r) out.set(name, { w, r });
    }
    return out;
  };
  await vi.waitFor(() => expect(diff().size).toBeGreaterThanOrEqual(rows));
  return diff();
}
