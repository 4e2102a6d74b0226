import type { BuildCheck } from "../build-record.js";
import { ExitCode, NixpoolError } from "../errors.js";

/** Two builds of one derivation whose output `output` differs. */
export interface BuildDifference {
  output: string;
  first: BuildCheck;
  second: BuildCheck;
}

/**
 * The first output whose NAR hash differs between a new build and an earlier one (each compared
 * with the first earlier build: equal hashes are transitive), or undefined when all agree. Only
 * the first build's outputs are compared; one the new build lacks differs.
 */
export function findDifference(
  earlier: readonly BuildCheck[],
  next: BuildCheck,
): BuildDifference | undefined {
  const first = earlier[0];
  if (!first) return undefined;
  // The first build's outputs: a reference may name only the outputs it knows (nixpool verify).
  const names = Object.keys(first.narHashes).sort();
  for (const output of names) {
    if (first.narHashes[output] !== next.narHashes[output]) return { output, first, second: next };
  }
  return undefined;
}

/** Where the outputs of two differing builds were kept, per builder and output. */
export interface KeptOutputs {
  dir: string;
  /** builder → output name → unpacked tree (absent when that builder could not send it). */
  trees: Record<string, Record<string, string>>;
}

const who = (b: BuildCheck) => `${b.builder} (${b.trust})`;

/**
 * NOT_REPRODUCIBLE: one sentence naming the derivation, both builders and both hashes; the hint
 * gives the command that shows the difference between the kept outputs.
 */
export function notReproducibleError(
  name: string,
  drv: string,
  diff: BuildDifference,
  kept: KeptOutputs,
  differ: "diffoscope" | "diff -r",
): NixpoolError {
  const a = kept.trees[diff.first.builder]?.[diff.output];
  const b = kept.trees[diff.second.builder]?.[diff.output];
  const hashA = diff.first.narHashes[diff.output] ?? "no output";
  const hashB = diff.second.narHashes[diff.output] ?? "no output";
  const untrusted = [diff.first, diff.second].filter((x) => x.trust === "untrusted").map((x) => x.builder);
  const refused =
    untrusted.length === 1 && diff.first.trust !== diff.second.trust
      ? ` The output of untrusted builder ${untrusted[0]} was not accepted.`
      : "";
  const keptWhere =
    a && b ? `both outputs are kept in ${kept.dir}` : `what could be fetched is kept in ${kept.dir}`;
  return new NixpoolError(
    "NOT_REPRODUCIBLE",
    `Builds of ${name} differ: output ${diff.output} has NAR hash ${hashA} on ${who(diff.first)} and ${hashB} on ${who(diff.second)}; ${keptWhere}.${refused}`,
    {
      hint:
        a && b
          ? `See the difference with: ${differ} ${a} ${b}`
          : `List what was kept with: ls -R ${kept.dir}`,
      exitCode: ExitCode.failed,
      details: {
        drv,
        output: diff.output,
        builds: [diff.first, diff.second].map((x) => ({ ...x, narHashes: { ...x.narHashes } })),
        kept: kept.dir,
      },
    },
  );
}
