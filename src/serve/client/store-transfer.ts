import { PassThrough } from "node:stream";
import { ServeSession } from "../../adapters/nix-serve-session.js";
import { LOCAL_SERVE_ARGV } from "../../dispatch/serve-sessions.js";
import type { CoordinatorClient } from "./coordinator-client.js";

/** What a transfer moved: paths and bytes of the export stream. */
export interface Transferred {
  paths: number;
  bytes: number;
}

/** Runs `fn` on a session of this machine's store, closed afterwards. */
async function withLocalStore<T>(
  signal: AbortSignal | undefined,
  fn: (s: ServeSession) => Promise<T>,
): Promise<T> {
  const s = await ServeSession.open({
    argv: LOCAL_SERVE_ARGV,
    name: "this machine's store",
    ...(signal ? { signal } : {}),
  });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/**
 * Sends the coordinator what its store lacks of the closure of `drvs` (the `.drv` files and the
 * sources they name), as one export stream, references first; nothing when it has them all (a
 * client on the coordinator's own machine).
 */
export async function uploadDerivations(
  client: CoordinatorClient,
  drvs: readonly string[],
  signal?: AbortSignal,
): Promise<Transferred> {
  return withLocalStore(signal, async (local) => {
    const closure = await local.queryClosure(drvs, false);
    const have = new Set(await client.validPaths(closure));
    const missing = closure.filter((p) => !have.has(p));
    if (missing.length === 0) return { paths: 0, bytes: 0 };
    const pipe = new PassThrough({ highWaterMark: 1 << 20 });
    let bytes = 0;
    const exported = local.exportPaths(missing, pipe, { onBytes: (n) => (bytes += n) }).then(
      () => pipe.end(),
      (e: unknown) => {
        pipe.destroy(e instanceof Error ? e : new Error(String(e)));
        throw e;
      },
    );
    const [, imported] = await Promise.all([exported, client.importPaths(pipe, signal)]);
    return { paths: imported.length, bytes };
  });
}

/**
 * Brings into this machine's store what it lacks of the closure of `outputs`, streamed from the
 * coordinator's store; nothing when it has them all.
 */
export async function downloadOutputs(
  client: CoordinatorClient,
  outputs: readonly string[],
  signal?: AbortSignal,
): Promise<Transferred> {
  if (outputs.length === 0) return { paths: 0, bytes: 0 };
  return withLocalStore(signal, async (local) => {
    // A valid path's closure is valid too: a client on the coordinator's machine asks it nothing
    // (the coordinator may already be gone, drained, once the build has ended).
    if ((await local.queryValidPaths(outputs)).length === outputs.length) return { paths: 0, bytes: 0 };
    const closure = await client.closure(outputs);
    const have = new Set(await local.queryValidPaths(closure));
    const missing = closure.filter((p) => !have.has(p));
    if (missing.length === 0) return { paths: 0, bytes: 0 };
    let bytes = 0;
    const res = await client.exportPaths(missing, signal);
    const imported = await local.importPaths(res, { onBytes: (n) => (bytes += n) });
    return { paths: imported.length, bytes };
  });
}
