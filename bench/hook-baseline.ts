/**
 * Baseline: a graph of N independent derivations (S seconds each) plus a root, built through
 * Nix's own build hook on a local pool of B builders × J jobs. Reports wall time against the
 * ideal (total build time / slots). Later dispatchers are measured against this, in the same run.
 *
 *   npm run bench -- [--builders 2] [--jobs 2] [--n 40] [--sleep 0.5] [--runs 3] [--json]
 */
import { parseArgs } from "node:util";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { poolDown, poolUp } from "../src/providers/local/pool.js";
import { poolBuilders } from "../src/providers/local/records.js";
import { runNixBuild } from "../src/adapters/nix-build.js";

const { values } = parseArgs({
  options: {
    builders: { type: "string", default: "2" },
    jobs: { type: "string", default: "2" },
    n: { type: "string", default: "40" },
    sleep: { type: "string", default: "0.5" },
    runs: { type: "string", default: "3" },
    json: { type: "boolean", default: false },
  },
});
const builders = Number(values.builders);
const jobs = Number(values.jobs);
const n = Number(values.n);
const sleep = Number(values.sleep);
const runs = Number(values.runs);
const slots = builders * jobs;
const ideal = (n * sleep) / slots;
const graph = resolve(import.meta.dirname, "../examples/graph.nix");

const stateDir = await mkdtemp(join(tmpdir(), "nixpool-bench-"));
const results: { run: number; wallS: number; ratio: number; waits: number }[] = [];
try {
  const pool = await poolUp(stateDir, { builders, jobs });
  const b = poolBuilders(pool);
  for (let i = 1; i <= runs; i++) {
    const seed = randomBytes(8).toString("hex");
    const r = await runNixBuild({
      builders: b,
      stateDir,
      paths: [graph],
      args: [
        { kind: "arg", name: "n", value: String(n) },
        { kind: "argstr", name: "sleep", value: String(sleep) },
        { kind: "argstr", name: "seed", value: seed },
      ],
      outLink: join(stateDir, `result-${i}`),
    });
    const offloaded = r.derivations.filter((d) => d.builder !== "local").length;
    if (offloaded !== n + 1) throw new Error(`expected ${n + 1} offloaded derivations, got ${offloaded}`);
    const wallS = r.wallMs / 1000;
    results.push({ run: i, wallS, ratio: wallS / ideal, waits: r.machineWaits });
    if (!values.json) console.error(`run ${i}: ${wallS.toFixed(2)} s (${(wallS / ideal).toFixed(2)}× ideal)`);
  }
} finally {
  await poolDown(stateDir);
  await rm(stateDir, { recursive: true, force: true });
}
const walls = results.map((r) => r.wallS).sort((a, b) => a - b);
const median = walls[Math.floor(walls.length / 2)] ?? 0;
const summary = {
  builders,
  jobs,
  n,
  sleep,
  slots,
  idealS: ideal,
  medianS: median,
  medianRatio: median / ideal,
  runs: results,
};
if (values.json) console.log(JSON.stringify(summary, null, 2));
else {
  console.log(`| dispatcher | builders × jobs | graph | ideal | median wall (${runs} runs) | ratio |`);
  console.log(`|---|---|---|---|---|---|`);
  console.log(
    `| Nix build hook (nix-build --max-jobs 0 --builders @machines) | ${builders} × ${jobs} | ${n} × ${sleep} s + root | ${ideal.toFixed(2)} s | ${median.toFixed(2)} s | ${(median / ideal).toFixed(2)}× |`,
  );
}
