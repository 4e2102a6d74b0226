import { existsSync } from "node:fs";
import { chmod, copyFile, cp, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { makeTempDir } from "./cli.js";

const ROOT = resolve(import.meta.dirname, "../..");

/** A copy of the built CLI that users other than root can run. */
export interface StagedCli {
  /** The copy's root: dist/, examples/, package.json and the runtime node_modules. */
  dir: string;
  /** dist/cli/main.js of the copy. */
  cli: string;
  /** examples/ of the copy. */
  examples: string;
  cleanup: () => Promise<void>;
}

/**
 * The runtime packages (no dev dependencies) from package-lock.json, as top-level node_modules
 * paths. Optional ones npm did not install (another platform's build, as koffi ships per
 * platform) are left out.
 */
async function listRuntimePackages(): Promise<string[]> {
  const lock = JSON.parse(await readFile(join(ROOT, "package-lock.json"), "utf8")) as {
    packages: Record<string, { dev?: boolean; optional?: boolean }>;
  };
  return Object.entries(lock.packages)
    .filter(([path, p]) => path.startsWith("node_modules/") && p.dev !== true)
    .filter(([path, p]) => p.optional !== true || existsSync(join(ROOT, path)))
    .map(([path]) => path)
    .filter((path) => !path.slice("node_modules/".length).includes("node_modules/"));
}

/**
 * Copies the built CLI into a fresh world-readable directory under the temporary directory. The
 * checkout may sit in a 0700 directory (a clone under /root), which nobody, sshd's command user or
 * a member's account cannot traverse: what they run must be staged where they can read it.
 */
export async function stageCli(): Promise<StagedCli> {
  const { dir, cleanup } = await makeTempDir("nixpool-staged-cli-");
  await chmod(dir, 0o755);
  await cp(join(ROOT, "dist"), join(dir, "dist"), { recursive: true });
  await cp(join(ROOT, "examples"), join(dir, "examples"), { recursive: true });
  await copyFile(join(ROOT, "package.json"), join(dir, "package.json"));
  for (const p of await listRuntimePackages()) {
    await cp(join(ROOT, p), join(dir, p), { recursive: true, verbatimSymlinks: true });
  }
  return { dir, cli: join(dir, "dist", "cli", "main.js"), examples: join(dir, "examples"), cleanup };
}
