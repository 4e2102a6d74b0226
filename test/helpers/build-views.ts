import { waitFor } from "../../src/adapters/wait-for.js";
import type { BuildDetail } from "../../src/serve/coordinator-types.js";

/**
 * The most derivations running at once in `builds`, from their recorded start and finish (on
 * `builder` only, when given; only those the build itself built, with `builtOnly`: a derivation
 * found built elsewhere carries the times of the build that built it).
 */
export function maxConcurrent(
  builds: readonly BuildDetail[],
  o: { builder?: string; builtOnly?: boolean } = {},
): number {
  const edges: [number, number][] = [];
  for (const b of builds) {
    for (const d of b.derivations) {
      if (!d.startedAt || !d.finishedAt || (o.builder && d.builder !== o.builder)) continue;
      if (o.builtOnly && d.status !== "built") continue;
      edges.push([Date.parse(d.startedAt), 1], [Date.parse(d.finishedAt), -1]);
    }
  }
  // An end and a start in the same millisecond: the end first (the slot was freed, then taken).
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let max = 0;
  for (const [, delta] of edges) max = Math.max(max, (now += delta));
  return max;
}

/** The build as `read` returns it once it is no longer queued or running (undefined after `timeoutMs`). */
export async function finishedBuild(
  read: () => Promise<BuildDetail | undefined>,
  timeoutMs: number,
): Promise<BuildDetail | undefined> {
  const d = await waitFor(
    async () => {
      const b = await read();
      return b !== undefined && b.status !== "queued" && b.status !== "running" ? b : undefined;
    },
    { timeoutMs, intervalMs: 200 },
  );
  return d || undefined;
}
