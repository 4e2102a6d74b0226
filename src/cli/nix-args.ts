/**
 * Rewrites nix-build style pairs (`--arg NAME VALUE`, `--argstr NAME VALUE`) into the single
 * `--arg=NAME=VALUE` form commander parses.
 */
export function joinNixArgPairs(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if ((a === "--arg" || a === "--argstr") && i + 2 < argv.length && !(argv[i + 1] ?? "").includes("=")) {
      out.push(`${a}=${argv[i + 1] ?? ""}=${argv[i + 2] ?? ""}`);
      i += 2;
    } else out.push(a);
  }
  return out;
}
