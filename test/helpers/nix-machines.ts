import { run } from "../../src/adapters/runner.js";
import type { ParsedMachine } from "../../src/core/machines-parse.js";

/** What Nix 2.8 made of a machines file: its machine summaries, or the error it stopped with. */
export type NixMachinesView = { ok: true; machines: string[] } | { ok: false; error: string };

// A derivation for a system no builder has: the build hook then lists every machine it parsed.
const PROBE =
  'derivation { name = "nixpool-machines-probe"; system = "riscv64-none"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; }';

/**
 * Asks the real Nix how it parses a machines file (NIX-NOTES: build for "riscv64-none" with
 * --max-jobs 0 --builders @FILE and read "(systems, maxjobs, supportedFeatures, mandatoryFeatures)").
 */
export async function nixParseMachines(path: string): Promise<NixMachinesView> {
  const r = await run(
    [
      "nix-build",
      "-E",
      PROBE,
      "--no-out-link",
      "--option",
      "substituters",
      "",
      "--max-jobs",
      "0",
      "--builders",
      `@${path}`,
    ],
    { reject: false, timeout: 60_000, cwd: "/" },
  );
  const bad =
    /error: (bad machine specification[^\n]*|[^\n]*stack overflow[^\n]*|reading from file[^\n]*)/.exec(
      r.stderr,
    );
  if (bad) return { ok: false, error: bad[1] ?? "" };
  const lines = r.stderr.split("\n");
  const header = lines.findIndex((l) =>
    l.startsWith("(systems, maxjobs, supportedFeatures, mandatoryFeatures)"),
  );
  if (header < 0) {
    // No machine at all: Nix says so without a list.
    if (/either increase '--max-jobs' or enable remote builds/.test(r.stderr))
      return { ok: true, machines: [] };
    throw new Error(`nix did not list machines:\n${r.stderr}`);
  }
  const count = Number(/(\d+) available machines:/.exec(r.stderr)?.[1] ?? "NaN");
  const machines = lines.slice(header + 1, header + 1 + count);
  if (machines.length !== count) throw new Error(`expected ${count} machines in:\n${r.stderr}`);
  return { ok: true, machines };
}

/** Formats a parsed machine the way Nix 2.8's build hook prints it. */
export function formatAsNix(m: ParsedMachine, thisSystem: string): string {
  return `(${(m.systems ?? [thisSystem]).join(", ")}, ${m.maxJobs}, ${m.supportedFeatures.join(", ")}, ${m.mandatoryFeatures.join(", ")})`;
}
