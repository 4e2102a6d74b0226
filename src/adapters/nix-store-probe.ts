import { constants } from "node:fs";
import { access, lstat } from "node:fs/promises";
import { effectiveStoreUri, storeProbePaths, type StoreFacts } from "../core/nix-store-kind.js";
import { run } from "./runner.js";

/**
 * Probes what Nix 2.8 looks at to resolve a store URI of "auto" (nix-store-kind.ts): whether
 * its state directory is readable and writable, and whether the daemon socket exists (an
 * lstat, as Nix's pathExists).
 */
export async function probeStoreAccess(
  store: string,
  env: Record<string, string | undefined>,
): Promise<Pick<StoreFacts, "stateWritable" | "daemonSocket">> {
  const paths = storeProbePaths(store, env);
  const [stateWritable, daemonSocket] = await Promise.all([
    access(paths.stateDir, constants.R_OK | constants.W_OK).then(
      () => true,
      () => false,
    ),
    lstat(paths.daemonSocket).then(
      () => true,
      () => false,
    ),
  ]);
  return { stateWritable, daemonSocket };
}

/** The `store` setting as Nix itself reports it (nix.conf wins over NIX_REMOTE); "" when Nix cannot say. */
export async function readStoreSetting(env: Record<string, string | undefined>): Promise<string> {
  const r = await run(["nix", "--extra-experimental-features", "nix-command", "show-config", "--json"], {
    env,
    reject: false,
    timeout: 15_000,
  }).catch(() => undefined);
  if (r?.exitCode !== 0) return "";
  try {
    const store = (JSON.parse(r.stdout) as { store?: { value?: unknown } }).store?.value;
    return typeof store === "string" ? store : "";
  } catch {
    return "";
  }
}

/** Everything the one store rule needs for a Nix run in `env`. */
export async function probeStoreFacts(env: Record<string, string | undefined>): Promise<StoreFacts> {
  const storeSetting = await readStoreSetting(env);
  const nixRemote = env["NIX_REMOTE"];
  const probed = await probeStoreAccess(effectiveStoreUri({ storeSetting, nixRemote }), env);
  return { storeSetting, nixRemote, ...probed };
}
