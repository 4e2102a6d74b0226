import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { run, type RunResult } from "../../src/adapters/runner.js";

/** The built CLI (npm test builds it first). */
export const CLI = resolve(import.meta.dirname, "../../dist/cli/main.js");

export interface CliOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  timeout?: number;
  input?: string;
}

/** Runs the built nixpool CLI with a state directory; never throws on a non-zero exit. */
export async function runCli(
  stateDir: string,
  args: readonly string[],
  options: CliOptions = {},
): Promise<RunResult> {
  return run(["node", CLI, "--state-dir", stateDir, ...args], {
    reject: false,
    timeout: options.timeout ?? 300_000,
    ...(options.env ? { env: options.env } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.input !== undefined ? { input: options.input } : {}),
  });
}

/** A fresh temporary directory, removed by the returned cleanup. */
export async function makeTempDir(
  prefix = "nixpool-test-",
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * For tests of the keys command that sshd runs as nobody: a temporary directory nobody can reach
 * (0755), and a prefix to install the command in that sshd accepts (root's, 0755, under /run, not
 * under the shared /tmp). cleanup removes both.
 */
export async function makeKeysCommandDirs(
  prefix: string,
): Promise<{ dir: string; commandPrefix: string; cleanup: () => Promise<void> }> {
  const tmp = await makeTempDir(prefix);
  await chmod(tmp.dir, 0o755);
  const commandPrefix = await mkdtemp("/run/nixpool-test-");
  await chmod(commandPrefix, 0o755);
  return {
    dir: tmp.dir,
    commandPrefix,
    cleanup: async () => {
      await rm(commandPrefix, { recursive: true, force: true });
      await tmp.cleanup();
    },
  };
}

/** Runs fn with a fresh temporary directory, removed afterwards even when fn fails. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>, prefix?: string): Promise<T> {
  const { dir, cleanup } = await makeTempDir(prefix);
  try {
    return await fn(dir);
  } finally {
    await cleanup();
  }
}

/** argv that runs argv as the unprivileged user nobody (uid and gid 65534, no groups). */
export function asNobody(argv: readonly string[]): string[] {
  return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ...argv];
}
