// Counts the requests each emulator serves, by operation and by resource (table or queue), so a
// benchmark can report the billable calls per transaction as measured, not as estimated.
export class Meter {
  private readonly counts = new Map<string, number>();

  count(service: string, operation: string, resource: string | undefined): void {
    const key = `${service}|${operation}|${resource ?? ''}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Rows of { service, operation, resource, count }, for diffing before/after a run. */
  snapshot(): { service: string; operation: string; resource: string; count: number }[] {
    return [...this.counts].map(([key, count]) => {
      const [service, operation, resource] = key.split('|') as [string, string, string];
      return { service, operation, resource, count };
    });
  }
}
