/**
 * The coordinator's autoscaler from zero workers, fresh workers against workers woken from a
 * snapshot, in the same run, on the Hetzner emulator whose servers boot as real local builder
 * hosts: a queue of `n` leaves (each sleeping `sleep` seconds) under one root is submitted to a
 * coordinator with no builder and `[autoscale.hetzner] maxWorkers = 2`.
 *
 * First a worker builds the graph and is suspended (its snapshot holds the outputs), and the
 * outputs are removed from this machine's store. Then the same queue runs twice: with
 * `fromSnapshot = "none"` (fresh workers: everything is uploaded and built) and with
 * `fromSnapshot = "latest"` (woken workers: they hold the outputs). Reported for each: queue to
 * first settled derivation, total wall, derivations built, paths uploaded, and the cost the budget
 * model counts (per build and per derivation). Boot and create delays are the emulator's
 * (`--create-ms`, `--boot-ms`; Hetzner reports 1–2 min for small snapshots, so the defaults are
 * scaled down and the same for both kinds).
 *
 *   npm run build && node --import tsx bench/autoscale.ts [--n 60] [--sleep 0.5] [--create-ms 3000] [--boot-ms 5000] [--json]
 */
import { parseArgs } from "node:util";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { run } from "../src/adapters/runner.js";
import { AUTOSCALE_DEFAULTS, type AutoscaleConfig } from "../src/core/autoscale/config.js";
import { fileInstallable, NO_FLAKE_OPTIONS } from "../src/core/installable.js";
import { evaluateDerivations } from "../src/dispatch/evaluate.js";
import { createLocalBooter } from "../src/emulator/hetzner/local-booter.js";
import { startHetznerEmulator } from "../src/emulator/hetzner/serve.js";
import { hetznerAutoscaleProvider } from "../src/providers/hetzner/autoscale-provider.js";
import { Coordinator } from "../src/serve/coordinator.js";
import type { AutoscaleView } from "../src/serve/coordinator-types.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "60" },
    sleep: { type: "string", default: "0.5" },
    "create-ms": { type: "string", default: "3000" },
    "boot-ms": { type: "string", default: "5000" },
    json: { type: "boolean", default: false },
  },
});
const CLI = resolve(import.meta.dirname, "../dist/cli/main.js");
const GRAPH = resolve(import.meta.dirname, "../examples/graph.nix");
const seed = randomBytes(8).toString("hex");
const log = (s: string) => {
  if (!values.json) console.error(s);
};

const root = await mkdtemp(join(tmpdir(), "nixpool-bench-autoscale-"));
const emu = await startHetznerEmulator({
  booter: createLocalBooter(join(root, "hosts")),
  timing: {
    createMs: Number(values["create-ms"]),
    bootMs: Number(values["boot-ms"]),
    deleteMs: 200,
    imageMs: 1000,
  },
});
const env = { HCLOUD_ENDPOINT: emu.endpoint, HCLOUD_TOKEN: "bench-token", NIXPOOL_HCLOUD_BOOT_TIMEOUT: "5m" };
const cli = async (args: string[]) => {
  const r = await run(["node", CLI, "--state-dir", root, ...args], {
    env,
    cwd: root,
    timeout: 900_000,
    reject: false,
  });
  if (r.exitCode !== 0) throw new Error(`nixpool ${args.join(" ")}: ${r.stderr}`);
  return r;
};
const derivations = await evaluateDerivations({
  flake: NO_FLAKE_OPTIONS,
  installables: [
    fileInstallable(
      GRAPH,
      [],
      [
        { kind: "arg", name: "n", value: values.n },
        { kind: "argstr", name: "seed", value: seed },
        { kind: "argstr", name: "sleep", value: values.sleep },
      ],
    ),
  ],
});
/** Removes the graph's outputs from this machine's store: only a worker (or its snapshot) holds them. */
const forget = async () => {
  const outs: string[] = [];
  for (const d of derivations) {
    const drvs = (await run(["nix-store", "-qR", d.drv])).stdout.trim().split("\n");
    for (const drv of drvs.filter((p) => p.endsWith(".drv")))
      outs.push(...(await run(["nix-store", "-q", "--outputs", drv])).stdout.trim().split("\n"));
  }
  await run(["nix-store", "--delete", ...new Set(outs)], { timeout: 120_000, reject: false });
};

interface Row {
  kind: "fresh" | "woken";
  /** Queue to the first rented worker ready (it joined the pool). */
  firstWorkerMs: number;
  /** Queue to the first derivation settled: built, or found on a worker (then all at once). */
  firstSettledMs: number;
  wallMs: number;
  built: number;
  cached: number;
  uploaded: number;
  costEur: number;
  costPerDerivationEur: number;
}

async function queue(kind: Row["kind"]): Promise<Row> {
  const stateDir = root;
  const config: AutoscaleConfig = {
    ...AUTOSCALE_DEFAULTS,
    maxWorkers: 2,
    serverTypes: ["cx33"],
    derivationsPerWorker: 30,
    scaleUpAfterMs: 0,
    intervalMs: 250,
    bootTimeoutMs: 300_000,
    fromSnapshot: kind === "woken" ? "latest" : "none",
    budget: {},
  };
  const c = await Coordinator.open({
    stateDir,
    builders: [],
    autoscale: {
      config,
      provider: hetznerAutoscaleProvider({
        stateDir,
        env: { ...process.env, ...env },
        config,
        log: () => undefined,
      }),
    },
  });
  try {
    const t0 = Date.now();
    const id = c.submit({ derivations, label: kind }, { user: "bench", via: "local" });
    const done = await c.waitFor(id);
    const wallMs = Date.now() - t0;
    if (done.status !== "succeeded") throw new Error(`${kind}: ${JSON.stringify(done.error)}`);
    const settled = done.derivations
      .map((d) => Date.parse(d.finishedAt ?? ""))
      .filter((t) => Number.isFinite(t));
    const view = c.autoscale() as AutoscaleView;
    const n = done.derivations.length;
    const ready = view.decisions.filter((d) => d.action === "ready").map((d) => Date.parse(d.at));
    // The budget counts every rental of this hour (the earlier run's too): this run's is the rest.
    const costEur = view.spent.hour - spentSoFar;
    spentSoFar = view.spent.hour;
    return {
      kind,
      firstWorkerMs: Math.min(...ready.filter((t) => t >= t0)) - t0,
      firstSettledMs: (settled.length ? Math.min(...settled) : t0 + wallMs) - t0,
      wallMs,
      built: done.derivations.filter((d) => d.status === "built").length,
      cached: done.derivations.filter((d) => d.status === "cached").length,
      uploaded: done.report?.stats.pathsUploaded ?? 0,
      costEur,
      costPerDerivationEur: costEur / n,
    };
  } finally {
    await c.close();
  }
}

let spentSoFar = 0;
const rows: Row[] = [];
try {
  log(
    `queue: ${values.n} leaves of ${values.sleep} s; create ${values["create-ms"]} ms, boot ${values["boot-ms"]} ms`,
  );
  const first = (
    JSON.parse((await cli(["worker", "up", "--type", "cx33", "--ttl", "1h", "--json"])).stdout) as {
      worker: { name: string };
    }
  ).worker.name;
  await cli([
    "build",
    GRAPH,
    "--arg",
    "n",
    values.n,
    "--argstr",
    "seed",
    seed,
    "--argstr",
    "sleep",
    values.sleep,
    "--no-out-link",
  ]);
  await cli(["worker", "suspend", first]);
  for (const kind of ["fresh", "woken"] as const) {
    await forget();
    const r = await queue(kind);
    rows.push(r);
    log(
      `${kind}: first worker ready ${r.firstWorkerMs} ms, first settled ${r.firstSettledMs} ms, wall ${r.wallMs} ms, ${r.built} built, ${r.cached} cached, ${r.uploaded} uploaded, ${r.costEur.toFixed(4)} EUR (${r.costPerDerivationEur.toFixed(5)} per derivation)`,
    );
  }
  const [fresh, woken] = rows;
  const summary = {
    n: Number(values.n),
    sleep: Number(values.sleep),
    createMs: Number(values["create-ms"]),
    bootMs: Number(values["boot-ms"]),
    rows,
    wallRatio: fresh && woken ? Number((woken.wallMs / fresh.wallMs).toFixed(3)) : null,
  };
  if (values.json) console.log(JSON.stringify(summary, null, 2));
  else log(`woken/fresh wall: ${summary.wallRatio}`);
} finally {
  await run(["node", CLI, "--state-dir", root, "worker", "gc"], { env, reject: false, timeout: 300_000 });
  await emu.close();
  await rm(root, { recursive: true, force: true });
}
