import { readFileSync } from "node:fs";
import { run, type RunResult } from "../../adapters/runner.js";
import { sshAlias } from "../../core/builder.js";
import { renderWorkerNixConf, WORKER_SYSTEM_PROFILE } from "../../core/cloud-init.js";
import { quoteShellWord } from "../../core/shell-word.js";
import { NixpoolError } from "../../core/errors.js";
import { isStorePath } from "../../core/store-path.js";
import { statePaths } from "../../config/state-paths.js";
import { saveRecord, workerBuilder, type Log, type WorkerRecord } from "./records.js";

// A worker's system: nixpool's configuration of the worker (its nix.conf, the nixpool version
// that wrote it) as a store path on the worker, the target of WORKER_SYSTEM_PROFILE. A worker
// woken from a snapshot taken with another configuration (another type's cores, an older
// nixpool) has an outdated one, and is switched to the wanted one before it takes work.

/** nixpool's version, from its package.json (dist/providers/hetzner/ and src/… are three levels down). */
export function nixpoolVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

/** The nix.conf of the system a worker should have now: its jobs and features, and who wrote it. */
export function renderWorkerSystemConf(rec: WorkerRecord): string {
  return (
    `# nixpool ${nixpoolVersion()} worker system\n` +
    renderWorkerNixConf({ maxJobs: rec.cores, systemFeatures: workerBuilder(rec).supportedFeatures })
  );
}

/**
 * Runs on the worker with the wanted nix.conf on stdin: adds it to the store as the system,
 * switches the profile when it points elsewhere, and prints `PATH` then `updated FROM` or
 * `current`. Fixed text: the only data arrives on stdin.
 */
const ENSURE_SYSTEM_SCRIPT = [
  "set -eu",
  "d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT",
  'mkdir "$d/nixpool-worker-system"',
  'cat > "$d/nixpool-worker-system/nix.conf"',
  'p=$(nix-store --add "$d/nixpool-worker-system")',
  `mkdir -p ${WORKER_SYSTEM_PROFILE.replace(/\/[^/]+$/, "")}`,
  `cur=$(readlink -e ${WORKER_SYSTEM_PROFILE} 2>/dev/null || true)`,
  'echo "$p"',
  `if [ "$cur" = "$p" ]; then echo current; else nix-env -p ${WORKER_SYSTEM_PROFILE} --set "$p" >/dev/null; echo "updated \${cur:-none}"; fi`,
].join("\n");

/** Runs argv on the worker as root over its pinned ssh_config; the result, whatever the exit. */
export function onWorker(
  stateDir: string,
  rec: WorkerRecord,
  argv: readonly string[],
  o: { input?: string; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<RunResult> {
  const { sshConfig } = statePaths(stateDir).hetzner.worker(rec.lease.id);
  return run(["ssh", "-F", sshConfig, sshAlias(workerBuilder(rec)), argv.map(quoteShellWord).join(" ")], {
    reject: false,
    timeout: o.timeoutMs ?? 120_000,
    ...(o.input !== undefined ? { input: o.input } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  });
}

/**
 * Gives the worker the wanted system, unless it has it already (a fresh worker never does; one
 * woken from a snapshot of the same configuration does); records its path.
 */
export async function ensureWorkerSystem(
  stateDir: string,
  rec: WorkerRecord,
  log: Log,
  signal?: AbortSignal,
): Promise<{ path: string; updatedFrom: string | null }> {
  const r = await onWorker(stateDir, rec, ["sh", "-c", ENSURE_SYSTEM_SCRIPT], {
    input: renderWorkerSystemConf(rec),
    ...(signal ? { signal } : {}),
  });
  const [path = "", state = ""] = r.stdout.trim().split("\n");
  if (r.exitCode !== 0 || !isStorePath(path)) {
    throw new NixpoolError(
      "WORKER_SYSTEM_FAILED",
      `Worker ${rec.lease.name} could not be given its system (${WORKER_SYSTEM_PROFILE}): ${r.stderr.trim().split("\n").slice(-1)[0] ?? `exit ${r.exitCode}`}.`,
      {
        hint: "The worker is deleted; run the same command again, and report this if it repeats (nixpool worker shell shows the worker's Nix).",
      },
    );
  }
  const from = state.startsWith("updated ") ? state.slice("updated ".length) : null;
  rec.systemPath = path;
  await saveRecord(stateDir, rec);
  if (from === null) log(`worker ${rec.lease.name}: system ${path} is current`);
  else if (from === "none") log(`worker ${rec.lease.name}: system ${path}`);
  else log(`worker ${rec.lease.name}: system updated from ${from} to ${path}`);
  return { path, updatedFrom: from === "none" ? null : from };
}
