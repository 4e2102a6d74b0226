/**
 * nixpool's own dispatcher against Nix's build hook, in one run, on one local pool of
 * B builders × J jobs. Each scenario alternates the two (hook, nixpool, hook, nixpool, …) with a
 * fresh seed per build, timing the whole `nixpool build` process, evaluation included.
 *
 *   npm run build && node --import tsx bench/dispatcher-vs-hook.ts [--runs 3] [--only wide,chain,many,big,huge]
 *
 * Scenarios: wide (40 × 0.5 s + root, ideal 5 s), chain (20 × 0.1 s), many (200 trivial),
 * big (one 20 s derivation), huge (5,000 trivial derivations: nixpool's CPU time and peak memory;
 * the hook is not run, it would take half an hour).
 */
import { parseArgs } from "node:util";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { execa } from "execa";
import { poolDown, poolUp } from "../src/providers/local/pool.js";

const { values } = parseArgs({
  options: {
    builders: { type: "string", default: "2" },
    jobs: { type: "string", default: "2" },
    runs: { type: "string", default: "3" },
    only: { type: "string", default: "wide,chain,many,big,huge" },
    json: { type: "boolean", default: false },
  },
});
const builders = Number(values.builders);
const jobs = Number(values.jobs);
const runs = Number(values.runs);
const only = new Set(values.only.split(","));
const CLI = resolve(import.meta.dirname, "../dist/cli/main.js");
const EX = resolve(import.meta.dirname, "../examples");

interface Scenario {
  name: string;
  what: string;
  file: string;
  args: string[];
  idealS: number;
  /** Derivations built per run. */
  count: number;
  hook: boolean;
  runs: number;
}

// 5,000 leaves under 50 groups of 100 under one root: no environment variable holds more than 100
// paths (one holding all 5,000 would pass Linux's 128 KiB limit for a single argument).
const HUGE_NIX = `{ n ? 5000, seed ? "" }:
let
  mk = name: script: extra: builtins.derivation ({ inherit name seed; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" script ]; } // extra);
  leaf = i: mk "t-\${toString i}" "echo \${toString i} > $out" { };
  group = g: mk "group-\${toString g}" "echo $members > $out" { members = builtins.genList (i: leaf (g * 100 + i)) 100; };
in mk "huge-root" "echo $groups > $out" { groups = builtins.genList group (n / 100); }
`;

const stateDir = await mkdtemp(join(tmpdir(), "nixpool-bench-"));
const hugeFile = join(stateDir, "huge.nix");
await writeFile(hugeFile, HUGE_NIX);
const slots = builders * jobs;
const scenarios: Scenario[] = [
  {
    name: "wide",
    what: "40 × 0.5 s + root",
    file: join(EX, "graph.nix"),
    args: ["--arg", "n", "40", "--argstr", "sleep", "0.5"],
    idealS: (40 * 0.5) / slots,
    count: 41,
    hook: true,
    runs,
  },
  {
    name: "chain",
    what: "chain of 20 × 0.1 s",
    file: join(EX, "chain.nix"),
    args: ["--arg", "length", "19", "--argstr", "sleep", "0.1"],
    idealS: 2,
    count: 20,
    hook: true,
    runs,
  },
  {
    name: "many",
    what: "200 trivial (199 + root)",
    file: join(EX, "graph.nix"),
    args: ["--arg", "n", "199", "--argstr", "sleep", "0"],
    idealS: 0,
    count: 200,
    hook: true,
    runs,
  },
  {
    name: "big",
    what: "one 20 s derivation (+ trivial root)",
    file: join(EX, "graph.nix"),
    args: ["--arg", "n", "1", "--argstr", "sleep", "20"],
    idealS: 20,
    count: 2,
    hook: true,
    runs: Math.min(runs, 2),
  },
  {
    name: "huge",
    what: "5,000 trivial + root",
    file: hugeFile,
    args: [],
    idealS: 0,
    count: 5051,
    hook: false,
    runs: 1,
  },
].filter((s) => only.has(s.name));

interface Run {
  wallS: number;
  cpuMs?: number;
  maxRssMb?: number;
}

async function buildOnce(s: Scenario, dispatcher: "hook" | "nixpool"): Promise<Run> {
  const seed = randomBytes(8).toString("hex");
  const t = process.hrtime.bigint();
  const r = await execa(
    "node",
    [
      CLI,
      "--state-dir",
      stateDir,
      "build",
      s.file,
      ...s.args,
      "--argstr",
      "seed",
      seed,
      "--dispatcher",
      dispatcher,
      "--json",
      "--no-out-link",
    ],
    { reject: false, timeout: 3_600_000 },
  );
  const wallS = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.exitCode !== 0) throw new Error(`${s.name}/${dispatcher} failed: ${r.stderr.slice(-2000)}`);
  const j = JSON.parse(r.stdout) as {
    derivations: { builder: string | null }[];
    stats?: { cpuMs: number; maxRssMb: number };
  };
  const offloaded = j.derivations.filter((d) => d.builder && d.builder !== "local").length;
  if (offloaded !== s.count)
    throw new Error(`${s.name}/${dispatcher}: expected ${s.count} derivations on builders, got ${offloaded}`);
  return { wallS, ...(j.stats ? { cpuMs: j.stats.cpuMs, maxRssMb: j.stats.maxRssMb } : {}) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const report: Record<string, unknown>[] = [];
const load0 = loadavg()[0];
try {
  await poolUp(stateDir, { builders, jobs });
  for (const s of scenarios) {
    const hook: Run[] = [];
    const own: Run[] = [];
    for (let i = 0; i < s.runs; i++) {
      if (s.hook) hook.push(await buildOnce(s, "hook"));
      own.push(await buildOnce(s, "nixpool"));
      if (!values.json)
        console.error(
          `${s.name} run ${i + 1}: hook ${hook.at(-1)?.wallS.toFixed(2) ?? "-"} s, nixpool ${own.at(-1)?.wallS.toFixed(2)} s`,
        );
    }
    const h = s.hook ? median(hook.map((r) => r.wallS)) : NaN;
    const n = median(own.map((r) => r.wallS));
    const row: Record<string, unknown> = {
      scenario: s.name,
      what: s.what,
      hookS: hook.map((r) => +r.wallS.toFixed(2)),
      nixpoolS: own.map((r) => +r.wallS.toFixed(2)),
      hookMedianS: +h.toFixed(2),
      nixpoolMedianS: +n.toFixed(2),
      speedup: +(h / n).toFixed(2),
    };
    if (s.idealS > 0)
      Object.assign(row, {
        idealS: s.idealS,
        hookVsIdeal: +(h / s.idealS).toFixed(2),
        nixpoolVsIdeal: +(n / s.idealS).toFixed(2),
      });
    if (s.name === "chain")
      Object.assign(row, {
        hookPerStepS: +((h - 2) / 20).toFixed(3),
        nixpoolPerStepS: +((n - 2) / 20).toFixed(3),
      });
    if (s.name === "many")
      Object.assign(row, {
        hookDrvPerS: +(s.count / h).toFixed(1),
        nixpoolDrvPerS: +(s.count / n).toFixed(1),
      });
    if (s.name === "big") Object.assign(row, { nixpoolVsHook: +(n / h).toFixed(3) });
    const cpu = own.map((r) => r.cpuMs).filter((x): x is number => x !== undefined);
    if (cpu.length) {
      Object.assign(row, {
        nixpoolCpuMsPerDrv: +(median(cpu) / s.count).toFixed(3),
        nixpoolPeakRssMb: Math.max(...own.map((r) => r.maxRssMb ?? 0)),
      });
    }
    report.push(row);
    if (!values.json) console.error(JSON.stringify(row));
  }
} finally {
  await poolDown(stateDir).catch(() => undefined);
  await rm(stateDir, { recursive: true, force: true });
}
const summary = {
  date: new Date().toISOString(),
  builders,
  jobs,
  loadBefore: load0,
  loadAfter: loadavg()[0],
  scenarios: report,
};
console.log(JSON.stringify(summary, null, 2));
