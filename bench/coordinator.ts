/**
 * The coordinator with two clients at once, against the same two builds without it, in one run on
 * one local pool of 2 builders × 2 jobs: each client builds examples/graph.nix with 40 leaves of
 * 0.5 s (+ a trivial root), a fresh seed per build. The ideal is 80 × 0.5 s / 4 slots = 10 s.
 *
 *   npm run build && node --import tsx bench/coordinator.ts [--runs 1] [--no-hook] [--no-cli] [--engines sqlite,postgres]
 *
 * --engines: the coordinator's history in SQLite (default) and/or a PostgreSQL started here; each
 * run measures the coordinator once per engine.
 *
 * - coordinator: one in-process Coordinator (warm connections); both builds submitted at once
 *   (evaluated first, as clients do); wall from the submits to the last build's end; the most
 *   derivations running at once (from its events, and from the recorded times); per derivation:
 *   slot time beyond its 0.5 s (upload, protocol, result) and the slot idle between derivations.
 * - cli-sequential: `nixpool build` (its own dispatcher) for one client, then the other.
 * - hook-concurrent: two `nixpool build --dispatcher hook` at once (Nix's hook shares the
 *   machines' slots between processes through its lock files).
 */
import { fileInstallable, NO_FLAKE_OPTIONS } from "../src/core/installable.js";
import { parseArgs } from "node:util";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { execa } from "execa";
import { waitFor } from "../src/adapters/wait-for.js";
import { evaluateDerivations } from "../src/dispatch/evaluate.js";
import { poolDown, poolUp } from "../src/providers/local/pool.js";
import { poolBuilders, type Pool } from "../src/providers/local/records.js";
import { Coordinator } from "../src/serve/coordinator.js";
import type { SubmitRequest } from "../src/serve/coordinator-types.js";
import { parseDatabaseUrl, type DatabaseTarget } from "../src/core/database-url.js";
import { startTestPostgres } from "../test/helpers/postgres.js";
import { maxConcurrent } from "../test/helpers/build-views.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "1" },
    "no-hook": { type: "boolean", default: false },
    "no-cli": { type: "boolean", default: false },
    engines: { type: "string", default: "sqlite" },
    leaves: { type: "string", default: "40" },
    sleep: { type: "string", default: "0.5" },
  },
});
const runs = Number(values.runs);
const leaves = Number(values.leaves);
const sleepS = Number(values.sleep);
const SLOTS = 4;
const idealS = (2 * leaves * sleepS) / SLOTS;
const CLI = resolve(import.meta.dirname, "../dist/cli/main.js");
const GRAPH = resolve(import.meta.dirname, "../examples/graph.nix");
const graphArgs = (seed: string) => [
  { kind: "arg" as const, name: "n", value: String(leaves) },
  { kind: "argstr" as const, name: "sleep", value: String(sleepS) },
  { kind: "argstr" as const, name: "seed", value: seed },
];

async function request(label: string): Promise<SubmitRequest> {
  const derivations = await evaluateDerivations({
    installables: [fileInstallable(GRAPH, [], graphArgs(randomBytes(8).toString("hex")))],
    flake: NO_FLAKE_OPTIONS,
  });
  return { derivations, label };
}

async function coordinatorRun(stateDir: string, pool: Pool, database?: DatabaseTarget) {
  const c = await Coordinator.open({
    stateDir,
    builders: poolBuilders(pool),
    ...(database ? { database } : {}),
  });
  try {
    // Warm: every slot session open before the clock starts (a service's normal state).
    await waitFor(() => c.builders().every((b) => b.health === "up"), { timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 1000));
    const [a, b] = await Promise.all([request("client a"), request("client b")]);
    let running = 0;
    let maxRunning = 0;
    const state = new Map<string, string>();
    c.subscribe((e) => {
      if (e.type !== "derivation") return;
      const key = `${e.buildId} ${e.derivation.drv}`;
      const was = state.get(key);
      state.set(key, e.derivation.status);
      if (was !== "running" && e.derivation.status === "running") running++;
      if (was === "running" && e.derivation.status !== "running") running--;
      maxRunning = Math.max(maxRunning, running);
    });
    const cpu0 = process.cpuUsage();
    const t = process.hrtime.bigint();
    const ids = [c.submit(a, { user: "a", via: "local" }), c.submit(b, { user: "b", via: "local" })];
    const done = await Promise.all(ids.map((id) => c.waitFor(id)));
    const wallS = Number(process.hrtime.bigint() - t) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    for (const d of done)
      if (d.status !== "succeeded") throw new Error(`build ${d.id}: ${JSON.stringify(d.error)}`);
    const drvs = done.flatMap((d) => d.derivations.filter((x) => x.name.startsWith("leaf-")));
    const held = drvs.map((d) => (Date.parse(d.finishedAt ?? "") - Date.parse(d.startedAt ?? "")) / 1000);
    const heldS = held.reduce((s, x) => s + x, 0);
    return {
      wallS: +wallS.toFixed(2),
      vsIdeal: +(wallS / idealS).toFixed(3),
      maxRunningFromEvents: maxRunning,
      maxRunningFromTimes: maxConcurrent(done),
      slotTimeBeyondBuildMsPerDrv: +((heldS / drvs.length - sleepS) * 1000).toFixed(1),
      slotIdleMsPerDrv: +(((wallS * SLOTS - heldS) / drvs.length) * 1000).toFixed(1),
      coordinatorCpuMsPerDrv: +((cpu.user + cpu.system) / 1000 / (2 * (leaves + 1))).toFixed(2),
      onEachBuilder: Object.fromEntries(
        ["local1", "local2"].map((n) => [n, drvs.filter((d) => d.builder === n).length]),
      ),
    };
  } finally {
    await c.close();
  }
}

async function cliBuild(stateDir: string, dispatcher: "nixpool" | "hook"): Promise<void> {
  const r = await execa(
    "node",
    [
      CLI,
      "--state-dir",
      stateDir,
      "build",
      GRAPH,
      "--arg",
      "n",
      String(leaves),
      "--argstr",
      "sleep",
      String(sleepS),
    ].concat([
      "--argstr",
      "seed",
      randomBytes(8).toString("hex"),
      "--dispatcher",
      dispatcher,
      "--no-out-link",
    ]),
    { reject: false, timeout: 900_000 },
  );
  if (r.exitCode !== 0)
    throw new Error(`nixpool build --dispatcher ${dispatcher} failed: ${r.stderr.slice(-2000)}`);
}

const time = async (f: () => Promise<unknown>) => {
  const t = process.hrtime.bigint();
  await f();
  return +(Number(process.hrtime.bigint() - t) / 1e9).toFixed(2);
};

const stateDir = await mkdtemp(join(tmpdir(), "nixpool-bench-coord-"));
const load0 = loadavg()[0];
const rows: Record<string, unknown>[] = [];
const engines = values.engines.split(",");
const postgres = engines.includes("postgres") ? await startTestPostgres() : undefined;
try {
  const pool = await poolUp(stateDir, { builders: 2, jobs: 2 });
  for (let i = 0; i < runs; i++) {
    const byEngine: Record<string, unknown> = {};
    for (const engine of engines) {
      const database =
        postgres && engine === "postgres"
          ? parseDatabaseUrl(await postgres.createDatabase(), "bench")
          : undefined;
      byEngine[engine] = await coordinatorRun(stateDir, pool, database);
      console.error(`run ${i + 1} coordinator (${engine}): ${JSON.stringify(byEngine[engine])}`);
    }
    const co = byEngine;
    if (values["no-cli"]) {
      rows.push({ coordinator: co });
      continue;
    }
    // Evaluation included here, as a user waits for it; the coordinator's clients evaluate too (about 0.3 s each).
    const seq = await time(async () => {
      await cliBuild(stateDir, "nixpool");
      await cliBuild(stateDir, "nixpool");
    });
    console.error(`run ${i + 1} cli-sequential: ${seq} s`);
    const hook = values["no-hook"]
      ? undefined
      : await time(() => Promise.all([cliBuild(stateDir, "hook"), cliBuild(stateDir, "hook")]));
    if (hook !== undefined) console.error(`run ${i + 1} hook-concurrent: ${hook} s`);
    rows.push({
      coordinator: co,
      cliSequentialS: seq,
      cliSequentialVsIdeal: +(seq / idealS).toFixed(3),
      ...(hook !== undefined
        ? { hookConcurrentS: hook, hookConcurrentVsIdeal: +(hook / idealS).toFixed(3) }
        : {}),
    });
  }
} finally {
  await postgres?.stop();
  await poolDown(stateDir).catch(() => undefined);
  await rm(stateDir, { recursive: true, force: true });
}
console.log(
  JSON.stringify(
    {
      date: new Date().toISOString(),
      leaves,
      sleepS,
      slots: SLOTS,
      idealS,
      loadBefore: load0,
      loadAfter: loadavg()[0],
      runs: rows,
    },
    null,
    2,
  ),
);
