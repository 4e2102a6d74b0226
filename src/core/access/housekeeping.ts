/** A candidate for removal found by the housekeeping scan. */
export interface HousekeepingEntry {
  path: string;
  kind: "build-dir" | "home-entry";
  mtimeMs: number;
}

/** The entries older than maxAgeMs at nowMs, oldest first. */
export function planHousekeeping(
  entries: readonly HousekeepingEntry[],
  nowMs: number,
  maxAgeMs: number,
): HousekeepingEntry[] {
  return entries.filter((e) => nowMs - e.mtimeMs > maxAgeMs).sort((a, b) => a.mtimeMs - b.mtimeMs);
}
