import type { z } from "zod";
import { readFileIfExists } from "../../adapters/fs.js";
import type { Builder } from "../../core/builder.js";
import { NixpoolError } from "../../core/errors.js";
import { localSystem } from "../../config/load.js";
import { localHostPaths, statePaths } from "../../config/state-paths.js";
import type * as recordSchemas from "./record-schemas.js";
import type { HostRecord, Pool } from "./record-schemas.js";

// The local pool's records: STATE/local/pool.json and each host's DIR/host.json. Read by every
// command that lists builders, so this module starts no process (see pool.ts and host.ts).

export type { HostRecord, Pool };

export const poolDir = (stateDir: string) => statePaths(stateDir).localPool.dir;
export const poolFile = (stateDir: string) => statePaths(stateDir).localPool.poolFile;
export const hostsDir = (stateDir: string) => statePaths(stateDir).localPool.hostsDir;

/**
 * Reads and validates a JSON record: undefined when the file does not exist, STATE_RECORD_INVALID
 * when it is not what nixpool wrote (any other read error, such as EACCES, is thrown as is).
 */
async function readRecord<T>(
  path: string,
  schemaOf: (schemas: typeof recordSchemas) => z.ZodType<T>,
  what: string,
): Promise<T | undefined> {
  const text = await readFileIfExists(path);
  if (text === undefined) return undefined;
  const schema = schemaOf(await import("./record-schemas.js"));
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw invalid(path, what, (e as Error).message);
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw invalid(path, what, issue ? `${issue.path.join(".") || "(top)"}: ${issue.message}` : "invalid");
  }
  return r.data;
}

function invalid(path: string, what: string, problem: string): NixpoolError {
  return new NixpoolError("STATE_RECORD_INVALID", `The ${what} ${path} is not valid (${problem}).`, {
    hint: "Stop what nixpool can still find and clear the record with: nixpool local down",
  });
}

/** Reads the pool record, or undefined when no pool is up. */
export function readPool(stateDir: string): Promise<Pool | undefined> {
  return readRecord(poolFile(stateDir), (s) => s.poolSchema, "local pool record");
}

/** Reads a host record written by startHost, or undefined when there is none. */
export function readHostRecord(dir: string): Promise<HostRecord | undefined> {
  return readRecord(localHostPaths(dir).record, (s) => s.hostRecordSchema, "builder host record");
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

/** Builders of the local pool in a state directory (none when no pool is up). */
export async function readPoolBuilders(stateDir: string): Promise<Builder[]> {
  const pool = await readPool(stateDir);
  return pool ? poolBuilders(pool) : [];
}
