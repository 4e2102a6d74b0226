/**
 * `nixpool check` against `nix flake check` with the same pool as its builders (Nix's build hook),
 * in one run, alternating the two with a fresh seed per run, timing each whole process
 * (evaluation included). The flake: 40 checks of 0.5 s, each depending on two shared inputs of
 * 0.5 s (built once). Ideal on B × J slots: 0.5 s + 40 × 0.5 s / (B × J).
 *
 *   npm run build && node --import tsx bench/flake-check.ts [--runs 3] [--checks 40] [--builders 2] [--jobs 2]
 */
import { parseArgs } from "node:util";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { execa } from "execa";
import { localSystem } from "../src/config/load.js";
import { writeClientFiles, nixSshEnv } from "../src/adapters/nix-build.js";
import { poolDown, poolUp } from "../src/providers/local/pool.js";
import { poolBuilders } from "../src/providers/local/records.js";

const { values } = parseArgs({
  options: {
    builders: { type: "string", default: "2" },
    jobs: { type: "string", default: "2" },
    runs: { type: "string", default: "3" },
    checks: { type: "string", default: "40" },
  },
});
const builders = Number(values.builders);
const jobs = Number(values.jobs);
const runs = Number(values.runs);
const checks = Number(values.checks);
const CLI = resolve(import.meta.dirname, "../dist/cli/main.js");
const SYSTEM = localSystem();
const idealS = 0.5 + (checks * 0.5) / (builders * jobs);

/** A flake of `checks` checks of 0.5 s over two shared inputs of 0.5 s; `seed` makes every path new. */
function flakeNix(seed: string): string {
  return `{
  outputs = { self }:
    let
      mk = name: script: extra: builtins.derivation ({
        inherit name; seed = "${seed}"; system = "${SYSTEM}"; builder = "/bin/sh"; args = [ "-c" script ];
      } // extra);
      shared = n: mk "shared-\${n}" "/bin/sleep 0.5; echo \${n} > $out" { };
      check = i: mk "check-\${toString i}" "read a < $a; read b < $b; /bin/sleep 0.5; echo ok > $out"
        { a = shared "a"; b = shared "b"; };
    in {
      checks.${SYSTEM} = builtins.listToAttrs (builtins.genList (i: { name = "c\${toString i}"; value = check i; }) ${checks});
    };
}
`;
}

const stateDir = await mkdtemp(join(tmpdir(), "nixpool-bench-flake-"));
const flakesDir = join(stateDir, "flakes");

async function newFlake(): Promise<string> {
  const dir = join(flakesDir, randomBytes(6).toString("hex"));
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "flake.nix"), flakeNix(randomBytes(8).toString("hex")));
  return dir;
}

async function timed(argv: string[], env: Record<string, string>, what: string): Promise<number> {
  const t = process.hrtime.bigint();
  const r = await execa(argv[0] ?? "", argv.slice(1), { reject: false, timeout: 3_600_000, env });
  const s = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.exitCode !== 0) throw new Error(`${what} failed (${r.exitCode}): ${r.stderr.slice(-2000)}`);
  return s;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const load0 = loadavg()[0];
const nix: number[] = [];
const own: number[] = [];
try {
  const pool = await poolUp(stateDir, { builders, jobs });
  const files = await writeClientFiles(stateDir, poolBuilders(pool));
  for (let i = 0; i < runs; i++) {
    const a = await newFlake();
    nix.push(
      await timed(
        [
          "nix",
          "--extra-experimental-features",
          "nix-command flakes",
          "flake",
          "check",
          `path:${a}`,
          "--max-jobs",
          "0",
          "--builders",
          `@${files.machines}`,
          "--option",
          "substituters",
          "",
          "--option",
          "builders-use-substitutes",
          "false",
        ],
        nixSshEnv(files),
        "nix flake check",
      ),
    );
    const b = await newFlake();
    own.push(
      await timed(
        ["node", CLI, "--state-dir", stateDir, "check", `path:${b}`, "--quiet"],
        {},
        "nixpool check",
      ),
    );
    console.error(
      `run ${i + 1}: nix flake check ${nix.at(-1)?.toFixed(2)} s, nixpool check ${own.at(-1)?.toFixed(2)} s`,
    );
  }
} finally {
  await poolDown(stateDir).catch(() => undefined);
  await rm(stateDir, { recursive: true, force: true });
}
const n = median(nix);
const o = median(own);
console.log(
  JSON.stringify(
    {
      date: new Date().toISOString(),
      builders,
      jobs,
      checks,
      loadBefore: load0,
      loadAfter: loadavg()[0],
      idealS,
      nixFlakeCheckS: nix.map((x) => +x.toFixed(2)),
      nixpoolCheckS: own.map((x) => +x.toFixed(2)),
      nixFlakeCheckMedianS: +n.toFixed(2),
      nixpoolCheckMedianS: +o.toFixed(2),
      nixVsIdeal: +(n / idealS).toFixed(2),
      nixpoolVsIdeal: +(o / idealS).toFixed(2),
      speedup: +(n / o).toFixed(2),
    },
    null,
    2,
  ),
);
