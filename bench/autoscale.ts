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
 * model counts (per build and per derivation). Delays are the emulator's: `--create-ms` (create_server
 * from a system image), `--snapshot-create-ms` (from a snapshot; default: --create-ms), `--boot-ms`
 * (then until SSH answers), `--provision-ms` (then cloud-init installing Nix on a fresh worker;
 * default 0), `--image-ms` (create_image, the suspend before the measured runs). The defaults are
 * the quick variant, scaled down and the same for both kinds; `--hetzner-times` sets the times
 * Hetzner reports (HETZNER_TIMES below; docs/performance.md names each number's source).
 *
 *   npm run build && node --import tsx bench/autoscale.ts [--n 60] [--sleep 0.5] [--hetzner-times]
 *       [--create-ms 3000] [--snapshot-create-ms MS] [--boot-ms 5000] [--provision-ms 0] [--image-ms 1000] [--json]
 */
import { parseArgs } from "node:util";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
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
    "hetzner-times": { type: "boolean", default: false },
    "create-ms": { type: "string" },
    "snapshot-create-ms": { type: "string" },
    "boot-ms": { type: "string" },
    "provision-ms": { type: "string" },
    "image-ms": { type: "string" },
    json: { type: "boolean", default: false },
  },
});

/** The quick variant: scaled down, the same for fresh and woken workers, no provisioning. */
const QUICK_TIMES = { createMs: 3000, snapshotCreateMs: 3000, bootMs: 5000, provisionMs: 0, imageMs: 1000 };
/**
 * Hetzner's reported times (2026; sources in docs/performance.md): a server from a system image
 * is running in 30–60 s, one from a small snapshot in 1–2 min, a snapshot takes 1–5 min; the OS
 * boot to SSH and cloud-init's installation of Nix on a fresh worker are estimates.
 */
const HETZNER_TIMES = {
  createMs: 45_000,
  snapshotCreateMs: 90_000,
  bootMs: 15_000,
  provisionMs: 45_000,
  imageMs: 60_000,
};
const preset = values["hetzner-times"] ? HETZNER_TIMES : QUICK_TIMES;
const flagMs = (flag: string, fallback: number) => {
  const v = values[flag as keyof typeof values];
  if (typeof v !== "string") return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${flag} takes a whole number of ms, not ${v}`);
  return n;
};
const createMs = flagMs("create-ms", preset.createMs);
const times = {
  createMs,
  // Without the preset, a snapshot's server takes --create-ms unless told otherwise.
  snapshotCreateMs: flagMs(
    "snapshot-create-ms",
    values["hetzner-times"] ? preset.snapshotCreateMs : createMs,
  ),
  bootMs: flagMs("boot-ms", preset.bootMs),
  provisionMs: flagMs("provision-ms", preset.provisionMs),
  imageMs: flagMs("image-ms", preset.imageMs),
};
const CLI = resolve(import.meta.dirname, "../dist/cli/main.js");
const GRAPH = resolve(import.meta.dirname, "../examples/graph.nix");
const seed = randomBytes(8).toString("hex");
const log = (s: string) => {
  if (!values.json) console.error(s);
};

const root = await mkdtemp(join(tmpdir(), "nixpool-bench-autoscale-"));
const emu = await startHetznerEmulator({
  booter: createLocalBooter(join(root, "hosts")),
  timing: { ...times, deleteMs: 200 },
});
const env = {
  HCLOUD_ENDPOINT: emu.endpoint,
  HCLOUD_TOKEN: "bench-token",
  NIXPOOL_HCLOUD_BOOT_TIMEOUT: "10m",
};
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

/**
 * Bytes of one leaf's output as a NAR: each leaf writes "leaf-I\n" (7 or 8 bytes, padded alike
 * to 8 in the NAR), and the graph has no other store path to upload (no sources; /bin/sh is the
 * host's), so what a worker is sent is leaves' outputs, built on the other worker, for the root.
 */
async function leafNarBytes(): Promise<number> {
  const file = join(root, "leaf-output");
  await writeFile(file, "leaf-10\n");
  // A NAR of a small ASCII file holds only bytes below 0x80: its text's length is its size.
  return Buffer.byteLength((await run(["nix-store", "--dump", file])).stdout);
}

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
  /** NAR bytes of the paths uploaded (uploaded × leafNarBytes). */
  uploadedBytes: number;
  /** Delays the emulator played before the first worker could be ready: create, boot, provisioning. */
  emulatedMs: { create: number; boot: number; provision: number };
  /** firstWorkerMs − the emulated delays: the autoscaler's tick, nixpool's SSH and Nix polling, the worker's system. */
  nixpoolMs: number;
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
    bootTimeoutMs: 600_000,
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
    const firstWorkerMs = Math.min(...ready.filter((t) => t >= t0)) - t0;
    const uploaded = done.report?.stats.pathsUploaded ?? 0;
    const emulatedMs = {
      create: kind === "woken" ? times.snapshotCreateMs : times.createMs,
      boot: times.bootMs,
      provision: kind === "woken" ? 0 : times.provisionMs,
    };
    return {
      kind,
      firstWorkerMs,
      firstSettledMs: (settled.length ? Math.min(...settled) : t0 + wallMs) - t0,
      wallMs,
      built: done.derivations.filter((d) => d.status === "built").length,
      cached: done.derivations.filter((d) => d.status === "cached").length,
      uploaded,
      uploadedBytes: uploaded * narBytes,
      emulatedMs,
      nixpoolMs: firstWorkerMs - emulatedMs.create - emulatedMs.boot - emulatedMs.provision,
      costEur,
      costPerDerivationEur: costEur / n,
    };
  } finally {
    await c.close();
  }
}

let spentSoFar = 0;
const rows: Row[] = [];
const narBytes = await leafNarBytes();
try {
  log(
    `queue: ${values.n} leaves of ${values.sleep} s; ${values["hetzner-times"] ? "Hetzner's reported times" : "quick"}: ${JSON.stringify(times)}`,
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
      `${kind}: first worker ready ${r.firstWorkerMs} ms (create ${r.emulatedMs.create} + boot ${r.emulatedMs.boot} + provisioning ${r.emulatedMs.provision} + nixpool ${r.nixpoolMs}), first settled ${r.firstSettledMs} ms, wall ${r.wallMs} ms, ${r.built} built, ${r.cached} cached, ${r.uploaded} uploaded (${r.uploadedBytes} bytes), ${r.costEur.toFixed(4)} EUR (${r.costPerDerivationEur.toFixed(5)} per derivation)`,
    );
  }
  const [fresh, woken] = rows;
  const summary = {
    n: Number(values.n),
    sleep: Number(values.sleep),
    preset: values["hetzner-times"] ? "hetzner" : "quick",
    ...times,
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
