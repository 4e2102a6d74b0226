import { chmod, copyFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { hostExecArgv } from "../../src/providers/local/host.js";
import type { TestPool } from "./pool.js";

export interface TrustBuilder {
  /** The pool host it reaches (local1…). */
  host: string;
  name: string;
  trust: "trusted" | "untrusted";
  maxJobs: number;
}

/**
 * Writes an inventory whose builders are the pool's hosts under other names, each with its own
 * trust and job count, plus a `[policy]` table; select them with --builder NAME.
 */
export async function writeTrustInventory(
  pool: TestPool,
  dir: string,
  builders: readonly TrustBuilder[],
  policy: string,
): Promise<string> {
  const blocks = builders.map((b) => {
    const h = pool.pool.hosts.find((x) => x.name === b.host);
    if (!h) throw new Error(`no pool host ${b.host}`);
    return [
      `[builders.${b.name}]`,
      `host = "${h.address}"`,
      `user = "root"`,
      `protocol = "ssh-ng"`,
      `maxJobs = ${b.maxJobs}`,
      `hostKey = "${h.hostKeyPub}"`,
      `identityFile = "${pool.pool.clientKeyPath}"`,
      `trust = "${b.trust}"`,
    ].join("\n");
  });
  const path = join(dir, `nixpool-${Math.random().toString(36).slice(2)}.toml`);
  await writeFile(path, `[policy]\n${policy}\n\n${blocks.join("\n\n")}\n`);
  return path;
}

/** Whether a store path is valid in a pool host's store. */
export async function isValidOnHost(pool: TestPool, host: string, path: string): Promise<boolean> {
  const h = pool.pool.hosts.find((x) => x.name === host);
  if (!h) throw new Error(`no pool host ${host}`);
  const r = await run(hostExecArgv(h, ["nix-store", "--check-validity", path]), { reject: false });
  return r.exitCode === 0;
}

/**
 * Makes a pool host tamper with every build: inside its mount namespace, /bin/sh (dash) becomes a
 * wrapper that runs the real shell, then appends a line to $out, as a malicious member with root
 * on a community builder could. Only that host sees it; it lasts as long as the host.
 */
export async function tamperHost(pool: TestPool, host: string, dir: string): Promise<void> {
  const h = pool.pool.hosts.find((x) => x.name === host);
  if (!h) throw new Error(`no pool host ${host}`);
  const shell = (await run(["readlink", "-f", "/bin/sh"])).stdout.trim();
  const real = join(dir, `${host}-real-sh`);
  const wrapper = join(dir, `${host}-tampering-sh`);
  await copyFile(shell, real);
  await chmod(real, 0o755);
  await writeFile(
    wrapper,
    `#!${real}\n${real} "$@"\nrc=$?\nif [ -n "$out" ] && [ -f "$out" ]; then echo tampered >> "$out"; fi\nexit $rc\n`,
    { mode: 0o755 },
  );
  await run(hostExecArgv(h, ["mount", "--bind", wrapper, shell]));
}
