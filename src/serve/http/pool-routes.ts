import { PassThrough, Readable } from "node:stream";
import type { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { SMALL_NAR, type PoolStore } from "../pool-store.js";
import { ApiError, badRequest } from "./api-error.js";
import type { ApiEnv } from "./api-env.js";
import { describeIssues } from "./api-schemas.js";

// The pool's stores as one store, for the gateway on this machine (docs/gateway.md): what any of
// them holds, path infos and closures from where they are, and NARs streamed from the store that
// holds them. Only for clients on the Unix socket: a remote client reads outputs through
// /api/store/* or the binary cache. The routes that write into this machine's store (fetch, and
// valid with substitute) only for the accounts that act for gateway clients (root, the
// coordinator's own, `serve --gateway-user`): the socket is open to every local account.

const STORE_PATH = z
  .string()
  .regex(/^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]{1,211}$/, "is not a store path");
const PathsSchema = z.strictObject({
  paths: z.array(STORE_PATH).min(1).max(100_000),
  substitute: z.boolean().optional(),
});
const PathSchema = z.strictObject({ path: STORE_PATH });

/** 100,000 paths fit in 16 MiB of JSON. */
const MAX_JSON = 16 * 1024 * 1024;

/** Adds /api/pool/* to the API app. */
export function mountPoolRoutes(
  app: Hono<ApiEnv>,
  pool: PoolStore,
  writers: () => ReadonlySet<number>,
): void {
  const json = bodyLimit({
    maxSize: MAX_JSON,
    onError: () => {
      throw new ApiError(413, "API_BAD_REQUEST", `The request body is over ${MAX_JSON / 1024 / 1024} MiB.`);
    },
  });
  const bodyOf = async <T extends z.ZodType>(
    c: { req: { json: () => Promise<unknown> }; get: (k: "client") => ApiEnv["Variables"]["client"] },
    schema: T,
  ): Promise<z.infer<T>> => {
    if (c.get("client").via !== "socket") {
      throw new ApiError(
        403,
        "API_FORBIDDEN",
        "The pool's stores are open to the gateway on the coordinator's machine only.",
        "From another machine: nixpool build --coordinator URL, or the binary cache (docs/cache.md).",
      );
    }
    const raw: unknown = await c.req.json().catch(() => {
      throw badRequest("The request body is not JSON.");
    });
    const r = schema.safeParse(raw);
    if (!r.success) throw badRequest(`store paths: ${describeIssues(r.error)}.`);
    return r.data;
  };
  /** Refuses a write into this machine's store (copying, substituting) to any account but the gateway's. */
  const mayWrite = (client: ApiEnv["Variables"]["client"], what: string): void => {
    if (client.uid !== undefined && writers().has(client.uid)) return;
    throw new ApiError(
      403,
      "API_FORBIDDEN",
      `${client.user} may not ${what} into the coordinator machine's store; only root and the gateway's account may.`,
      "Run the gateway as the account given to `nixpool serve --gateway-user`, or ask without substitute (read-only routes answer every local account).",
    );
  };

  /** The subset of `paths` valid in any store of the pool (`substitute`: try this machine's substituters first). */
  app.post("/api/pool/valid", json, async (c) => {
    const b = await bodyOf(c, PathsSchema);
    if (b.substitute) mayWrite(c.get("client"), "substitute paths");
    return c.json({ valid: await pool.valid(b.paths, b.substitute ?? false) });
  });

  /** Copies `paths` (with their closures) from the builders holding them into this machine's store. */
  app.post("/api/pool/fetch", json, async (c) => {
    mayWrite(c.get("client"), "copy paths");
    const b = await bodyOf(c, PathsSchema);
    const copied = await pool.fetchToLocal(b.paths).catch((e: unknown) => {
      throw new ApiError(
        404,
        "API_NOT_FOUND",
        `The pool could not copy them here: ${e instanceof Error ? e.message : String(e)}.`,
      );
    });
    return c.json({ copied });
  });

  /** Path infos of the valid ones among `paths`, from the stores holding them. */
  app.post("/api/pool/path-infos", json, async (c) => {
    const b = await bodyOf(c, PathsSchema);
    return c.json({ infos: await pool.pathInfos(b.paths) });
  });

  /** The closure of `paths`; 404 when one is valid nowhere. */
  app.post("/api/pool/closure", json, async (c) => {
    const b = await bodyOf(c, PathsSchema);
    const closure = await pool.closure(b.paths);
    if (!closure) throw new ApiError(404, "API_NOT_FOUND", "No store of the pool holds every path asked.");
    return c.json({ closure });
  });

  /** The NAR of `path`, streamed from the store holding it; 404 when none does. A cut stream ends short. */
  app.post("/api/pool/nar", json, async (c) => {
    const { path } = await bodyOf(c, PathSchema);
    const dump = await pool.nar(path);
    if (!dump) throw new ApiError(404, "API_NOT_FOUND", `No store of the pool holds ${path}.`);
    // Room for a whole NAR of the size a builder's transfer session sends (larger ones come
    // through a session of their own): that session, shared with the dispatcher, is never held
    // up by a gateway client that reads slowly or not at all.
    const out = new PassThrough({ highWaterMark: SMALL_NAR + (1 << 16) });
    void dump(out).then(
      () => out.end(),
      (e: unknown) => out.destroy(e instanceof Error ? e : new Error(String(e))),
    );
    return new Response(Readable.toWeb(out) as ReadableStream<Uint8Array>, {
      status: 200,
      headers: { "Content-Type": "application/x-nix-nar", "X-Content-Type-Options": "nosniff" },
    });
  });
}
