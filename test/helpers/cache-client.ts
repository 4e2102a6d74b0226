import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run, type RunResult } from "../../src/adapters/runner.js";
import { hostExecArgv, startHost, stopHost } from "../../src/providers/local/host.js";
import type { HostRecord } from "../../src/providers/local/records.js";

/**
 * A machine that uses the pool's binary cache: a host of its own (mount namespace with an empty
 * /nix, network namespace behind a veth), made as src/providers/local makes builder hosts but
 * outside the pool, so nothing but the cache ever puts a path into its store.
 */
export interface CacheClient {
  host: HostRecord;
  /** The address of this machine as the client reaches it (the veth's other end). */
  serverAddress: string;
  /** Runs argv inside the client's namespaces; never throws on a non-zero exit. */
  exec: (argv: readonly string[], timeoutMs?: number) => Promise<RunResult>;
  /** Nix options that make it substitute from `url` only, trusting `publicKey`, with `netrc` (none: no file). */
  cacheOptions: (url: string, publicKey: string, netrc?: string) => Promise<string[]>;
  cleanup: () => Promise<void>;
}

export async function startCacheClient(dir: string, name = "cacheclient"): Promise<CacheClient> {
  const host = await startHost({ name, dir: join(dir, name), jobs: 1, authorizedKeys: [] });
  let n = 0;
  return {
    host,
    serverAddress: host.hostAddress,
    exec: (argv, timeoutMs = 300_000) => run(hostExecArgv(host, argv), { reject: false, timeout: timeoutMs }),
    cacheOptions: async (url, publicKey, netrc) => {
      const opts = [
        "--option",
        "substituters",
        url,
        "--option",
        "trusted-public-keys",
        publicKey,
        // Fail fast instead of retrying a refused narinfo for seconds.
        "--option",
        "narinfo-cache-negative-ttl",
        "0",
      ];
      if (netrc === undefined) return opts;
      const file = join(dir, `netrc-${name}-${n++}`);
      await writeFile(file, netrc, { mode: 0o600 });
      return [...opts, "--option", "netrc-file", file];
    },
    cleanup: () => stopHost(host),
  };
}

/** `nix-store` of the client: whether a path is valid in its store. */
export async function isValidOnClient(c: CacheClient, path: string): Promise<boolean> {
  return (await c.exec(["nix-store", "--check-validity", path])).exitCode === 0;
}

/** Runs a command (outside any namespace) that must succeed: its stdout. */
export async function stdoutOf(argv: readonly string[]): Promise<string> {
  return (await run(argv)).stdout.trim();
}
