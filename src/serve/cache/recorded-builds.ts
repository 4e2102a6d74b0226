import { readFile } from "node:fs/promises";
import type { ResultFact } from "../../core/binary-cache/servable.js";
import { outputPaths, parseDerivation } from "../../core/derivation.js";
import { isDerivationPath } from "../../core/store-path.js";

/** A derivation's successful builds as the coordinator's history holds them. */
export interface RecordedDerivation {
  drv: string;
  builds?:
    { builder: string; trust: "trusted" | "untrusted"; narHashes: Record<string, string> }[] | undefined;
}

/** The coordinator's history, as far as the cache reads it (Coordinator.cacheSources()). */
export interface RecordedBuildsSource {
  /** Finished builds' derivation records in rows after `afterRow` (0: all), oldest first. */
  builtResults(
    afterRow: number,
  ): Promise<{ row: number; finishedAt: string | null; records: RecordedDerivation[] }[]>;
}

const NAR_HASH = /^sha256:[0-9a-z]{52}$/;

/**
 * The results the coordinator's history records (who built each output, with which trust and NAR
 * hash), as the facts the cache's trust rule reads (core/binary-cache/servable.ts), beside those of
 * STATE/trust/results.jsonl: a build the history holds is servable even when the results file
 * lost it. An output's path comes from its derivation in this machine's store (a derivation that is
 * no longer here is skipped); each new row is read once.
 */
export class RecordedBuilds {
  private afterRow = 0;
  private readonly facts: ResultFact[] = [];
  private readonly outputsOf = new Map<string, Map<string, string> | null>();

  constructor(
    private readonly source: RecordedBuildsSource,
    private readonly log: (line: string) => void,
  ) {}

  /** Every fact read so far. */
  all(): readonly ResultFact[] {
    return this.facts;
  }

  /** Reads the rows recorded since the last call; true when there were any. */
  async update(): Promise<boolean> {
    let rows: Awaited<ReturnType<RecordedBuildsSource["builtResults"]>>;
    try {
      rows = await this.source.builtResults(this.afterRow);
    } catch (e) {
      this.log(`cache: cannot read the coordinator's history: ${e instanceof Error ? e.message : String(e)}`);
      return false;
    }
    for (const row of rows) {
      this.afterRow = Math.max(this.afterRow, row.row);
      const builtAt = row.finishedAt ?? new Date(0).toISOString();
      for (const d of row.records) {
        if (!d.builds?.length || !isDerivationPath(d.drv)) continue;
        const outputs = await this.outputs(d.drv);
        if (!outputs) continue;
        for (const b of d.builds) {
          for (const [name, narHash] of Object.entries(b.narHashes)) {
            const output = outputs.get(name);
            if (output === undefined || !NAR_HASH.test(narHash)) continue;
            this.facts.push({ output, drv: d.drv, builder: b.builder, trust: b.trust, narHash, builtAt });
          }
        }
      }
    }
    return rows.length > 0;
  }

  /** A derivation's output paths by name, read from this machine's store once; null when it is not here. */
  private async outputs(drv: string): Promise<Map<string, string> | null> {
    const known = this.outputsOf.get(drv);
    if (known !== undefined) return known;
    let found: Map<string, string> | null;
    try {
      found = outputPaths(parseDerivation(await readFile(drv, "utf8"), drv));
    } catch {
      found = null;
    }
    this.outputsOf.set(drv, found);
    return found;
  }
}
