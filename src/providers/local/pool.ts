import { existsSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { ExitCode, isNixpoolError, NixpoolError } from "../../core/errors.js";
import { readDirIfExists, writeFileAtomic } from "../../adapters/fs.js";
import { run } from "../../adapters/runner.js";
import { statePaths } from "../../config/state-paths.js";
import { isProcessAlive } from "../../adapters/process-alive.js";
import { requireRoot, startHost, stopHost } from "./host.js";
import {
  hostsDir,
  poolDir,
  poolFile,
  readHostRecord,
  readPool,
  type HostRecord,
  type Pool,
} from "./records.js";

export interface PoolUpOptions {
  builders: number;
  jobs: number;
}

/** The login key nixpool uses for the pool's builders (0600). */
export async function ensureClientKey(stateDir: string): Promise<string> {
  const path = statePaths(stateDir).localPool.clientKey;
  if (!existsSync(path)) {
    await mkdir(poolDir(stateDir), { recursive: true, mode: 0o700 });
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nixpool-local-client", "-f", path]);
  }
  return path;
}

/** Starts N builder hosts with J job slots each, all reachable with one login key. */
export async function poolUp(stateDir: string, options: PoolUpOptions): Promise<Pool> {
  if (!Number.isInteger(options.builders) || options.builders < 1 || options.builders > 64) {
    throw new NixpoolError("USAGE", `--builders must be an integer from 1 to 64 (got ${options.builders}).`, {
      hint: "For example: nixpool local up --builders 2",
      exitCode: ExitCode.usage,
    });
  }
  if (!Number.isInteger(options.jobs) || options.jobs < 1 || options.jobs > 256) {
    throw new NixpoolError("USAGE", `--jobs must be an integer from 1 to 256 (got ${options.jobs}).`, {
      hint: "For example: nixpool local up --jobs 2",
      exitCode: ExitCode.usage,
    });
  }
  requireRoot();
  const existing = await readPool(stateDir);
  if (existing) {
    throw new NixpoolError(
      "LOCAL_POOL_EXISTS",
      `A local pool of ${existing.hosts.length} builders is already up in ${stateDir}.`,
      {
        hint: "Use it (nixpool builders), or stop it first: nixpool local down",
        exitCode: ExitCode.usage,
      },
    );
  }
  const clientKeyPath = await ensureClientKey(stateDir);
  const clientPub = (await readFile(`${clientKeyPath}.pub`, "utf8")).trim();
  await mkdir(hostsDir(stateDir), { recursive: true, mode: 0o700 });
  const results = await Promise.allSettled(
    Array.from({ length: options.builders }, (_, i) =>
      startHost({
        name: `local${i + 1}`,
        dir: statePaths(stateDir).localPool.host(`local${i + 1}`).dir,
        jobs: options.jobs,
        authorizedKeys: [clientPub],
      }),
    ),
  );
  const failed = results.find((r) => r.status === "rejected");
  const hosts = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  if (failed) {
    await Promise.all(hosts.map((h) => stopHost(h)));
    throw failed.reason;
  }
  const pool: Pool = { jobs: options.jobs, createdAt: new Date().toISOString(), clientKeyPath, hosts };
  await writeFileAtomic(poolFile(stateDir), JSON.stringify(pool, null, 2), { mode: 0o600 });
  return pool;
}

function skipInvalid(e: unknown): undefined {
  if (isNixpoolError(e) && e.code === "STATE_RECORD_INVALID") return undefined;
  throw e;
}

/**
 * Stops every host of the pool, including hosts of a pool that crashed while starting
 * (found through their host.json), and removes the pool's state.
 */
export async function poolDown(stateDir: string): Promise<{ stopped: number }> {
  // A damaged record must not stop `local down`: hosts it no longer names are found through
  // their host.json, and those whose record is damaged too by `local down`'s orphan search.
  const pool = await readPool(stateDir).catch(skipInvalid);
  const records = new Map<string, HostRecord>();
  for (const h of pool?.hosts ?? []) records.set(h.dir, h);
  const dirs = (await readDirIfExists(hostsDir(stateDir))) ?? [];
  for (const d of dirs) {
    const rec = await readHostRecord(join(hostsDir(stateDir), d)).catch(skipInvalid);
    if (rec) records.set(rec.dir, rec);
  }
  await Promise.all([...records.values()].map((h) => stopHost(h)));
  await rm(poolFile(stateDir), { force: true });
  await rm(hostsDir(stateDir), { recursive: true, force: true });
  return { stopped: records.size };
}

/** The pool's hosts as builders of the inventory: local1…localN, ssh-ng as root, pinned keys. */
/** Per host: whether its sshd is still running. */
export function poolHealth(pool: Pool): { name: string; running: boolean }[] {
  return pool.hosts.map((h) => ({ name: h.name, running: isProcessAlive(h.sshdPid) }));
}
