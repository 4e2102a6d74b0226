import { PassThrough } from "node:stream";
import type { ExportedPath } from "../core/nix-serve/index.js";
import type { ServeSession } from "./nix-serve-session.js";

/**
 * Copies `paths` from one peer to another: `to` imports while `from` exports, the bytes piped
 * through with no temporary file. Nix sorts the exported paths so references come first, but
 * every reference must be valid on `to` or among `paths` (send a closure). Resolves when `to`
 * has acknowledged. If `from` fails midway, `to` is killed (a half-sent stream leaves it in an
 * unknown state); if `to` fails, `from` reads its answer to the end and stays usable.
 */
export async function transferPaths(
  from: ServeSession,
  to: ServeSession,
  paths: readonly string[],
  options: { timeoutMs?: number; onBytes?: (bytes: number) => void } = {},
): Promise<ExportedPath[]> {
  if (from === to) throw new Error("transferPaths needs two different sessions");
  const pipe = new PassThrough({ highWaterMark: 1 << 20 });
  const imported = to.importPaths(
    pipe,
    options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs },
  );
  const exported = from.exportPaths(paths, pipe, options).then(
    (r) => {
      pipe.end();
      return r;
    },
    (e: unknown) => {
      pipe.destroy(e instanceof Error ? e : new Error(String(e)));
      throw e;
    },
  );
  const [sent] = await Promise.all([exported, imported]).catch(async (e: unknown) => {
    // Whichever failed first, neither side is left half-way: settle both before reporting.
    await Promise.allSettled([exported, imported]);
    throw e;
  });
  return sent;
}
