// Deliberate bugs, planted in the product's own code paths behind switches that only the
// simulation sets (test/sim). Each must make the simulation report a violation of an invariant of
// DESIGN.md: if one does not, the simulation cannot see that kind of bug. In production every
// switch is off, and checking one is a Set lookup.

export const MUTATIONS = [
  /** The vote tally commits once every recorded vote is YES, missing votes included. */
  'commitWithoutEveryYes',
  /** The decision write drops its `status = PREPARING` condition. */
  'decideWithoutPreparing',
  /** The participant runs its handlers without consulting the barrier record. */
  'skipBarrier',
  /** An expired lease frees a lock whatever its owner's status (it may still commit). */
  'leaseFreesPreparedLock',
  /** Phase two stops re-sending after a few attempts. */
  'phaseTwoGivesUp',
  /** The vote write drops its prepare-deadline condition. */
  'voteAfterDeadline',
  /** Participants whose vote was never recorded are not sent ABORT. */
  'noAbortToSilent',
  /** The deadlock detector aborts a waiting transaction outside the cycle it found. */
  'victimOutsideCycle',
] as const;

export type Mutation = (typeof MUTATIONS)[number];

const active = new Set<Mutation>();

export function mutated(mutation: Mutation): boolean {
  return active.size > 0 && active.has(mutation);
}

/** For the simulation only: plant one mutation (or none). */
export function setMutation(mutation: Mutation | undefined): void {
  active.clear();
  if (mutation) active.add(mutation);
}
