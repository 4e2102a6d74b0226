import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Builder } from "../../core/builder.js";
import { NixpoolError } from "../../core/errors.js";
import { writeFileAtomic } from "../../adapters/fs.js";
import { run } from "../../adapters/runner.js";
import { localSystem } from "../../config/load.js";
import { statePaths } from "../../config/state-paths.js";
import { isProcessAlive } from "../../adapters/process-alive.js";
import { readHostRecord, requireRoot, startHost, stopHost, type HostRecord } from "./host.js";

/** A running local pool, as recorded in STATE/local/pool.json. */
export interface Pool {
  jobs: number;
  createdAt: string;
  clientKeyPath: string;
  hosts: HostRecord[];
}

export interface PoolUpOptions {
  builders: number;
  jobs: number;
}

const poolDir = (stateDir: string) => statePaths(stateDir).localPool.dir;
const poolFile = (stateDir: string) => statePaths(stateDir).localPool.poolFile;
const hostsDir = (stateDir: string) => statePaths(stateDir).localPool.hostsDir;

/** The login key nixpool uses for the pool's builders (0600). */
export async function ensureClientKey(stateDir: string): Promise<string> {
  const path = statePaths(stateDir).localPool.clientKey;
  if (!existsSync(path)) {
    await mkdir(poolDir(stateDir), { recursive: true, mode: 0o700 });
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nixpool-local-client", "-f", path]);
  }
  return path;
}

/** Reads the pool record, or undefined when no pool is up. */
export async function readPool(stateDir: string): Promise<Pool | undefined> {
  const text = await readFile(poolFile(stateDir), "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  return JSON.parse(text) as Pool;
}

/** Starts N builder hosts with J job slots each, all reachable with one login key. */
export async function poolUp(stateDir: string, options: PoolUpOptions): Promise<Pool> {
  if (!Number.isInteger(options.builders) || options.builders < 1 || options.builders > 64) {
    throw new NixpoolError("USAGE", `--builders must be an integer from 1 to 64 (got ${options.builders}).`, {
      hint: "For example: nixpool local up --builders 2",
      exitCode: 2,
    });
  }
  if (!Number.isInteger(options.jobs) || options.jobs < 1 || options.jobs > 256) {
    throw new NixpoolError("USAGE", `--jobs must be an integer from 1 to 256 (got ${options.jobs}).`, {
      hint: "For example: nixpool local up --jobs 2",
      exitCode: 2,
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
        exitCode: 2,
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

/**
 * Stops every host of the pool, including hosts of a pool that crashed while starting
 * (found through their host.json), and removes the pool's state.
 */
export async function poolDown(stateDir: string): Promise<{ stopped: number }> {
  const pool = await readPool(stateDir);
  const records = new Map<string, HostRecord>();
  for (const h of pool?.hosts ?? []) records.set(h.dir, h);
  const dirs = await readdir(hostsDir(stateDir)).catch(() => []);
  for (const d of dirs) {
    const rec = await readHostRecord(join(hostsDir(stateDir), d));
    if (rec) records.set(rec.dir, rec);
  }
  await Promise.all([...records.values()].map((h) => stopHost(h)));
  await rm(poolFile(stateDir), { force: true });
  await rm(hostsDir(stateDir), { recursive: true, force: true });
  return { stopped: records.size };
}

/** The pool's hosts as builders of the inventory: local1…localN, ssh-ng as root, pinned keys. */
export function poolBuilders(pool: Pool, system = localSystem()): Builder[] {
  return pool.hosts.map((h) => ({
    name: h.name,
    host: h.address,
    port: 22,
    user: "root",
    protocol: "ssh-ng" as const,
    systems: [system],
    maxJobs: pool.jobs,
    speedFactor: 1,
    supportedFeatures: [],
    mandatoryFeatures: [],
    hostKey: h.hostKeyPub,
    identityFile: pool.clientKeyPath,
    tags: ["local"],
    trust: "trusted" as const,
    source: "local" as const,
  }));
}

/** Per host: whether its sshd is still running. */
export function poolHealth(pool: Pool): { name: string; running: boolean }[] {
  return pool.hosts.map((h) => ({ name: h.name, running: isProcessAlive(h.sshdPid) }));
}

/** Builders of the local pool in a state directory (none when no pool is up). */
export async function readPoolBuilders(stateDir: string): Promise<Builder[]> {
  const pool = await readPool(stateDir);
  return pool ? poolBuilders(pool) : [];
}
