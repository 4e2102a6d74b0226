/**
 * Doctor on 20 builders, one of them unreachable: is the diagnosis as slow as the slowest
 * probe, or as the sum of all probes? Starts a local pool of 20 builders × 1 job, cuts one
 * host's link, runs `nixpool doctor --json --no-local --timeout T` (the built CLI) and prints
 * wall time, the slowest and the sum of per-builder times.
 *
 * Then, for comparison, the same builders diagnosed one after the other (one doctor per builder).
 *
 *   npm run build && node --import tsx bench/doctor-20.ts [--builders 20] [--timeout 30] [--runs 3] [--no-sequential]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { run } from "../src/adapters/runner.js";
import { setLinkUp } from "../src/providers/local/host.js";
import { poolDown, poolUp } from "../src/providers/local/pool.js";
import type { DoctorReport } from "../src/core/doctor/model.js";

const { values } = parseArgs({
  options: {
    builders: { type: "string", default: "20" },
    timeout: { type: "string", default: "30" },
    runs: { type: "string", default: "3" },
    "no-sequential": { type: "boolean", default: false },
  },
});
const n = Number(values.builders);
const timeout = Number(values.timeout);
const runs = Number(values.runs);
const CLI = resolve(import.meta.dirname, "../dist/cli/main.js");

const stateDir = await mkdtemp(join(tmpdir(), "nixpool-bench-doctor-"));
try {
  const t0 = Date.now();
  const pool = await poolUp(stateDir, { builders: n, jobs: 1 });
  console.log(`pool of ${n} builders up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const cut = pool.hosts[n - 1];
  if (!cut) throw new Error("no host to cut");
  await setLinkUp(cut, false);
  console.log(`cut the link of ${cut.name}; per-builder budget --timeout ${timeout}`);
  const load = () =>
    loadavg()
      .map((x) => x.toFixed(2))
      .join(" ");
  console.log(`load average before: ${load()}`);
  for (let i = 1; i <= runs; i++) {
    const started = Date.now();
    const r = await run(
      ["node", CLI, "--state-dir", stateDir, "doctor", "--json", "--no-local", "--timeout", String(timeout)],
      { reject: false, timeout: 600_000 },
    );
    const wall = Date.now() - started;
    const report = JSON.parse(r.stdout) as DoctorReport;
    const times = report.builders.map((b) => b.durationMs);
    const healthy = report.builders.filter((b) => b.name !== cut.name);
    const failing = report.builders.filter((b) => b.status === "fail").map((b) => b.name);
    const slowestHealthy = Math.max(...healthy.map((b) => b.durationMs));
    const sum = times.reduce((a, b) => a + b, 0);
    console.log(
      `run ${i}: exit ${r.exitCode}, wall ${(wall / 1000).toFixed(2)} s; slowest builder ${(Math.max(...times) / 1000).toFixed(2)} s ` +
        `(unreachable ${cut.name}: ${((report.builders.find((b) => b.name === cut.name)?.durationMs ?? 0) / 1000).toFixed(2)} s, ` +
        `slowest healthy ${(slowestHealthy / 1000).toFixed(2)} s); sum of builders ${(sum / 1000).toFixed(1)} s; ` +
        `failing: ${failing.join(", ") || "none"}; healthy all pass: ${healthy.every((b) => b.status === "pass")}`,
    );
    for (const b of healthy)
      for (const c of b.checks.filter((x) => x.status !== "pass"))
        console.log(`  ${b.name} ${c.id} ${c.status}: ${c.message}`);
  }
  if (!values["no-sequential"]) {
    const started = Date.now();
    for (const h of pool.hosts) {
      await run(
        [
          "node",
          CLI,
          "--state-dir",
          stateDir,
          "doctor",
          h.name,
          "--json",
          "--no-local",
          "--timeout",
          String(timeout),
        ],
        {
          reject: false,
          timeout: 600_000,
        },
      );
    }
    console.log(`one after the other: ${((Date.now() - started) / 1000).toFixed(2)} s for ${n} builders`);
  }
  console.log(`load average after: ${load()}`);
} finally {
  await poolDown(stateDir);
  await rm(stateDir, { recursive: true, force: true });
}
