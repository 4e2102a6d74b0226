import { KeyLineError, formatKey, parseKeyLine } from "../core/public-key.js";

export interface FetchKeysOptions {
  /** Base URL, default https://github.com; keys are at BASE/HANDLE.keys. */
  baseUrl: string;
  timeoutMs: number;
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /** Most keys accepted for one handle. */
  maxKeys: number;
  signal?: AbortSignal | undefined;
}

/** The outcome of one fetch: keys (possibly none) or a classified failure that keeps the cache. */
export type FetchKeysResult =
  | { ok: true; keys: string[]; gone: boolean }
  | {
      ok: false;
      reason: "timeout" | "rate-limited" | "http" | "network" | "oversized" | "invalid";
      message: string;
    };

async function readCapped(res: Response, maxBytes: number): Promise<string | undefined> {
  const declared = Number(res.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel();
    return undefined;
  }
  if (!res.body) return "";
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Fetches BASE/HANDLE.keys with a timeout and a size cap. Every line must be a valid key: one
 * bad line (options, shell text, garbage) rejects the whole answer. 404 means the account is gone.
 */
export async function fetchGithubKeys(handle: string, o: FetchKeysOptions): Promise<FetchKeysResult> {
  const url = `${o.baseUrl.replace(/\/+$/, "")}/${encodeURIComponent(handle)}.keys`;
  const timeout = AbortSignal.timeout(o.timeoutMs);
  const signal = o.signal ? AbortSignal.any([timeout, o.signal]) : timeout;
  try {
    const res = await fetch(url, { signal, redirect: "error", headers: { accept: "text/plain" } });
    if (res.status === 404) {
      await res.body?.cancel();
      return { ok: true, keys: [], gone: true };
    }
    if (res.status === 429 || (res.status === 403 && res.headers.get("x-ratelimit-remaining") === "0")) {
      await res.body?.cancel();
      return { ok: false, reason: "rate-limited", message: `rate limited (HTTP ${res.status})` };
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      return { ok: false, reason: "http", message: `HTTP ${res.status}` };
    }
    const body = await readCapped(res, o.maxBytes);
    if (body === undefined) {
      return { ok: false, reason: "oversized", message: `the answer is larger than ${o.maxBytes} bytes` };
    }
    const lines = body
      .split("\n")
      .map((l) => l.replace(/\r$/, ""))
      .filter((l) => l.trim() !== "");
    if (lines.length > o.maxKeys) {
      return {
        ok: false,
        reason: "oversized",
        message: `the answer lists ${lines.length} keys (at most ${o.maxKeys})`,
      };
    }
    const keys: string[] = [];
    for (const [i, line] of lines.entries()) {
      try {
        keys.push(formatKey(parseKeyLine(line)));
      } catch (e) {
        if (!(e instanceof KeyLineError)) throw e;
        return { ok: false, reason: "invalid", message: `line ${i + 1} is refused: ${e.message}` };
      }
    }
    return { ok: true, keys, gone: false };
  } catch (e) {
    if (timeout.aborted)
      return { ok: false, reason: "timeout", message: `no answer within ${o.timeoutMs} ms` };
    if (o.signal?.aborted) throw e;
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    return { ok: false, reason: "network", message: cause?.code ?? cause?.message ?? (e as Error).message };
  }
}
