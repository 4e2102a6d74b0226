/**
 * A fresh worker against one woken from a snapshot, in the same run, on the Hetzner emulator
 * whose servers boot as real local builder hosts: a graph of `n` leaves (each sleeping `sleep`
 * seconds) is built on a worker, the worker is suspended, the outputs are removed from this
 * machine's store; then the same graph is built once on a fresh worker (the baseline: it uploads
 * and rebuilds everything) and once on a worker woken from the snapshot (it holds the outputs).
 * Reported: wall time of `worker up` and of the build, paths uploaded, derivations built.
 *
 *   npm run build && node --import tsx bench/snapshot-wake.ts [--n 20] [--sleep 0.5] [--json]
 */
import { parseArgs } from "node:util";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { run } from "../src/adapters/runner.js";
import { createLocalBooter } from "../src/emulator/hetzner/local-booter.js";
import { startHetznerEmulator } from "../src/emulator/hetzner/serve.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "20" },
    sleep: { type: "string", default: "0.5" },
    json: { type: "boolean", default: false },
  },
});
const CLI = resolve(import.meta.dirname, "../dist/cli/main.js");
const GRAPH = resolve(import.meta.dirname, "../examples/graph.nix");
const seed = randomBytes(8).toString("hex");
const graph = ["--arg", "n", values.n, "--argstr", "seed", seed, "--argstr", "sleep", values.sleep];
const log = (s: string) => {
  if (!values.json) console.error(s);
};

interface BuildJson {
  wallMs: number;
  derivations: { drv: string; status: string }[];
  stats: { pathsUploaded: number };
}

const root = await mkdtemp(join(tmpdir(), "nixpool-bench-wake-"));
const emu = await startHetznerEmulator({
  booter: createLocalBooter(join(root, "hosts")),
  timing: { createMs: 500, bootMs: 300, deleteMs: 200, imageMs: 1000 },
});
const env = { HCLOUD_ENDPOINT: emu.endpoint, HCLOUD_TOKEN: "bench-token", NIXPOOL_HCLOUD_BOOT_TIMEOUT: "2m" };
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
const timed = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
  const t = Date.now();
  const v = await fn();
  return [v, Date.now() - t];
};
const up = async (...args: string[]) =>
  (
    JSON.parse((await cli(["worker", "up", "--type", "cx33", "--ttl", "1h", "--json", ...args])).stdout) as {
      worker: { name: string };
    }
  ).worker.name;
const build = async () =>
  JSON.parse((await cli(["build", GRAPH, ...graph, "--json", "--no-out-link"])).stdout) as BuildJson;
const forget = async (b: BuildJson) => {
  const outs: string[] = [];
  for (const d of b.derivations)
    outs.push(...(await run(["nix-store", "-q", "--outputs", d.drv])).stdout.trim().split("\n"));
  await run(["nix-store", "--delete", ...outs], { timeout: 120_000 });
};

const rows: { worker: string; upMs: number; buildMs: number; uploaded: number; built: number }[] = [];
try {
  log(`graph: ${values.n} leaves of ${values.sleep} s`);
  const first = await up();
  const warmup = await build();
  log(`first build on ${first}: ${warmup.wallMs} ms, ${warmup.stats.pathsUploaded} paths uploaded`);
  const [, suspendMs] = await timed(() => cli(["worker", "suspend", first]));
  log(`suspend: ${suspendMs} ms`);
  for (const kind of ["fresh", "woken"] as const) {
    await forget(warmup);
    const [name, upMs] = await timed(() => (kind === "fresh" ? up() : up("--from-snapshot", "latest")));
    const b = await build();
    const built = b.derivations.filter((d) => d.status === "built").length;
    rows.push({ worker: kind, upMs, buildMs: b.wallMs, uploaded: b.stats.pathsUploaded, built });
    log(
      `${kind}: worker up ${upMs} ms, build ${b.wallMs} ms, ${b.stats.pathsUploaded} uploaded, ${built} built`,
    );
    await cli(["worker", "down", name]);
  }
  const [fresh, woken] = rows;
  const summary = {
    n: Number(values.n),
    sleep: Number(values.sleep),
    suspendMs,
    rows,
    buildRatio: fresh && woken ? Number((woken.buildMs / fresh.buildMs).toFixed(3)) : null,
  };
  if (values.json) console.log(JSON.stringify(summary, null, 2));
  else log(`woken/fresh build wall: ${summary.buildRatio}`);
} finally {
  await run(["node", CLI, "--state-dir", root, "worker", "gc"], { env, reject: false, timeout: 300_000 });
  await emu.close();
  await rm(root, { recursive: true, force: true });
}
