import { readFileSync } from "node:fs";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { parseDerivation, type Derivation } from "../core/derivation.js";
import { NixpoolError } from "../core/errors.js";
import { isDerivationPath } from "../core/store-path.js";

export interface ReadClosureOptions {
  /** Files read between two turns of the event loop; default 128. */
  batchSize?: number;
  /** Read `/nix/store/…` under this directory instead of `/` (a store mounted elsewhere). */
  root?: string;
  signal?: AbortSignal;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads every `.drv` of the closure of `roots` straight from the store directory, with no
 * process per derivation. Keys are derivation paths. Files are read synchronously in bounded
 * batches, yielding to the event loop between batches: on this machine 5,000 small files take
 * ~50 ms that way against ~300 ms through the thread pool (fs.promises.readFile).
 */
export async function readDerivationClosure(
  roots: readonly string[],
  options: ReadClosureOptions = {},
): Promise<Map<string, Derivation>> {
  const batch = Math.max(1, options.batchSize ?? 128);
  const prefix = options.root ?? "";
  const result = new Map<string, Derivation>();
  const seen = new Set<string>();
  const queue: string[] = [];
  const enqueue = (path: string, from: string | undefined) => {
    if (seen.has(path)) return;
    if (!isDerivationPath(path)) {
      throw new NixpoolError(
        "DERIVATION_INVALID",
        `${JSON.stringify(path)}${from ? ` (an input of ${from})` : ""} is not a derivation path (/nix/store/<hash>-<name>.drv).`,
        { hint: "Pass the .drv paths nix-instantiate prints.", details: { path } },
      );
    }
    seen.add(path);
    queue.push(path);
  };
  for (const r of roots) enqueue(r, undefined);

  const readOne = (path: string): void => {
    let bytes: Buffer;
    try {
      bytes = readFileSync(prefix + path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? "error";
      throw new NixpoolError("DERIVATION_UNREADABLE", `Cannot read the derivation ${path} (${code}).`, {
        hint: `Check that it is still in the store (\`nix-store --check-validity ${path}\`); run nix-instantiate again if it was garbage-collected.`,
        details: { path, code },
        cause: e,
      });
    }
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      throw new NixpoolError("DERIVATION_INVALID", `The derivation ${path} is not valid UTF-8 text.`, {
        hint: `Inspect it with \`nix --extra-experimental-features nix-command show-derivation ${path}\`.`,
        details: { path },
      });
    }
    const drv = parseDerivation(text, path);
    result.set(path, drv);
    for (const input of drv.inputDrvs.keys()) enqueue(input, path);
  };

  while (queue.length > 0) {
    options.signal?.throwIfAborted();
    for (let i = 0; i < batch && queue.length > 0; i++) readOne(queue.pop()!);
    if (queue.length > 0) await yieldToEventLoop();
  }
  return result;
}
