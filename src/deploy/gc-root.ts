import { mkdir } from "node:fs/promises";
import { sshAlias } from "../core/builder.js";
import { quoteShellWord } from "../core/shell-word.js";
import { statePaths } from "../config/state-paths.js";
import { run } from "../adapters/runner.js";
import { createOutLinks } from "../dispatch/out-links.js";
import type { SystemPlace } from "./system-build.js";

/** Where a builder keeps the GC roots of deployed systems: relative to its login's home. */
export const BUILDER_GCROOTS_DIR = ".local/state/nixpool/gcroots";

/** The script that registers an indirect GC root on a builder. $1 dir, $2 name, $3 store path. */
const BUILDER_ROOT_SCRIPT =
  'mkdir -p "$1" && nix-store --realise "$3" --add-root "$1/$2" --indirect > /dev/null';

/** argv that registers `deploy-TARGET` as a GC root of path on a builder, through nixpool's ssh_config. */
export function builderGcRootArgv(
  sshConfig: string,
  builder: string,
  target: string,
  path: string,
): string[] {
  const cmd = ["sh", "-c", BUILDER_ROOT_SCRIPT, "sh", BUILDER_GCROOTS_DIR, `deploy-${target}`, path];
  return [
    "ssh",
    "-F",
    sshConfig,
    "-o",
    "BatchMode=yes",
    "-T",
    sshAlias({ name: builder }),
    cmd.map(quoteShellWord).join(" "),
  ];
}

/**
 * Keeps the system deployed to a target alive where it was built, so that a garbage collection
 * there never forces a rebuild: STATE/deploy/gcroots/TARGET on this machine, or
 * ~/.local/state/nixpool/gcroots/deploy-TARGET on the builder. Returns the root's path.
 */
export async function keepGcRoot(
  place: SystemPlace,
  target: string,
  path: string,
  o: { stateDir: string; sshConfig?: string | undefined; signal?: AbortSignal | undefined },
): Promise<string> {
  if (place.kind === "local") {
    const paths = statePaths(o.stateDir).deploy;
    await mkdir(paths.gcrootsDir, { recursive: true, mode: 0o700 });
    const link = paths.gcroot(target);
    await createOutLinks([{ link, path }], o.signal);
    return link;
  }
  if (!o.sshConfig) throw new Error("keepGcRoot: a builder's root needs nixpool's ssh_config");
  await run(builderGcRootArgv(o.sshConfig, place.builder.name, target, path), {
    timeout: 60_000,
    ...(o.signal ? { signal: o.signal } : {}),
  });
  return `${place.builder.name}:~/${BUILDER_GCROOTS_DIR}/deploy-${target}`;
}
