import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { mkdir } from "node:fs/promises";
import { z } from "zod";
import { writeFileAtomic } from "../adapters/fs.js";

const DurationsFile = z.object({
  version: z.literal(1),
  /** Derivation name (without hash) → learned build time in ms. */
  names: z.record(z.string(), z.number().nonnegative().finite()),
});

/** Learned build times by derivation name, kept under the state directory between builds. */
export class Durations {
  private constructor(
    private readonly path: string,
    private readonly names: Map<string, number>,
  ) {}

  /** Reads the file; a missing or unreadable-as-JSON file starts empty (it is only a hint). */
  static async load(path: string): Promise<Durations> {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return new Durations(path, new Map());
      throw e;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return new Durations(path, new Map());
    }
    const ok = DurationsFile.safeParse(parsed);
    return new Durations(path, new Map(ok.success ? Object.entries(ok.data.names) : []));
  }

  /** The learned time, or the median of all learned times, or `fallbackMs`. */
  estimate(name: string, fallbackMs = 1000): number {
    const known = this.names.get(name);
    if (known !== undefined) return known;
    return fallbackMs;
  }

  /** Folds in a measured build time (moving average, so one slow run does not dominate). */
  record(name: string, ms: number): void {
    const old = this.names.get(name);
    this.names.set(name, old === undefined ? ms : Math.round(old * 0.5 + ms * 0.5));
  }

  async save(): Promise<void> {
    // Bounded: keep the most recently recorded 20,000 names.
    const entries = [...this.names.entries()].slice(-20_000);
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    await writeFileAtomic(
      this.path,
      `${JSON.stringify({ version: 1, names: Object.fromEntries(entries) })}\n`,
    );
  }
}
