import { PassThrough, Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { ServeSession } from "../../adapters/nix-serve-session.js";
import { LOCAL_SERVE_ARGV } from "../../dispatch/serve-sessions.js";
import { ApiError, badRequest } from "./api-error.js";
import type { ApiEnv } from "./api-env.js";
import { describeIssues } from "./api-schemas.js";

// The coordinator machine's store, for clients on other machines (their own stores): which paths
// it has, their closure, importing the .drv closure a client evaluated, exporting outputs back.
// The streams pass through a `nix-store --serve --write` session, checked as they pass (the export
// stream's structure, and Nix's own checks on import), with no temporary copy.

const STORE_PATH = z
  .string()
  .regex(/^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]{1,211}$/, "is not a store path");
const PathsSchema = z.strictObject({ paths: z.array(STORE_PATH).min(1).max(100_000) });

/** A list of paths is JSON: 100,000 of them fit in 16 MiB. */
const MAX_JSON = 16 * 1024 * 1024;

export interface StoreRoutesOptions {
  /** Opens a session on this machine's store (default: `nix-store --serve --write`). */
  openStore?: () => Promise<ServeSession>;
  /** Most bytes one import may carry; default 64 GiB. */
  maxImportBytes?: number;
}

const openLocal = () => ServeSession.open({ argv: LOCAL_SERVE_ARGV, name: "the coordinator's store" });

/** Runs `fn` on a fresh session of this machine's store, closed afterwards whatever happens. */
async function withStore<T>(
  open: () => Promise<ServeSession>,
  fn: (s: ServeSession) => Promise<T>,
): Promise<T> {
  const s = await open();
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** Adds /api/store/* to the API app (authenticated as every other route). */
export function mountStoreRoutes(app: Hono<ApiEnv>, o: StoreRoutesOptions = {}): void {
  const open = o.openStore ?? openLocal;
  const maxImport = o.maxImportBytes ?? 64 * 1024 ** 3;
  const json = bodyLimit({
    maxSize: MAX_JSON,
    onError: () => {
      throw new ApiError(413, "API_BAD_REQUEST", `The request body is over ${MAX_JSON / 1024 / 1024} MiB.`);
    },
  });
  const pathsOf = async (c: { req: { json: () => Promise<unknown> } }) => {
    const raw: unknown = await c.req.json().catch(() => {
      throw badRequest("The request body is not JSON.");
    });
    const r = PathsSchema.safeParse(raw);
    if (!r.success) throw badRequest(`store paths: ${describeIssues(r.error)}.`);
    return r.data.paths;
  };

  /** The subset of `paths` this machine's store holds. */
  app.post("/api/store/valid", json, async (c) => {
    const paths = await pathsOf(c);
    return c.json({ valid: await withStore(open, (s) => s.queryValidPaths(paths)) });
  });

  /** The closure of `paths` (all must be valid here). */
  app.post("/api/store/closure", json, async (c) => {
    const paths = await pathsOf(c);
    return c.json({ closure: await withStore(open, (s) => s.queryClosure(paths, false)) });
  });

  /**
   * Imports an export stream (nix-store --export, references first) into this machine's store.
   * Only root on the socket and token holders: a local user shares this store already, and an
   * import writes to it as the coordinator's user. Without a token (`--no-token`) a TCP request
   * could come from any local user, so it may not import either.
   */
  app.post("/api/store/import", async (c) => {
    const client = c.get("client");
    if (client.via === "socket" && client.uid !== 0) {
      throw new ApiError(
        403,
        "API_FORBIDDEN",
        `User ${client.user} shares this machine's store and may not import into it through the coordinator.`,
        "Build from this machine as usual: nixpool build … (nothing needs uploading).",
      );
    }
    if (client.unauthenticated) {
      throw new ApiError(
        403,
        "API_FORBIDDEN",
        "This coordinator serves TCP without a token (--no-token), so nobody may import into its store over TCP.",
        "Serve with a token (drop --no-token) and give the client its own: nixpool serve token --client NAME.",
      );
    }
    if (!/^application\/x-nix-export\b/i.test(c.req.header("content-type") ?? "")) {
      throw new ApiError(
        415,
        "API_BAD_REQUEST",
        "POST /api/store/import takes Content-Type: application/x-nix-export.",
      );
    }
    const web = c.req.raw.body;
    if (!web) throw badRequest("POST /api/store/import needs an export stream as its body.");
    const body = Readable.fromWeb(web as WebReadableStream<Uint8Array>);
    let bytes = 0;
    const limited = new PassThrough({ highWaterMark: 1 << 20 });
    body.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > maxImport) body.destroy(new Error(`the export stream is over ${maxImport} bytes`));
    });
    body.on("error", (e) => limited.destroy(e));
    body.pipe(limited);
    const imported = await withStore(open, (s) => s.importPaths(limited)).catch((e: unknown) => {
      throw badRequest(`The export stream was not imported: ${e instanceof Error ? e.message : String(e)}.`);
    });
    return c.json({ imported: imported.map((p) => p.path), bytes });
  });

  /** Streams the export of exactly `paths` (references first); the client asks for what it lacks. */
  app.post("/api/store/export", json, async (c) => {
    const paths = await pathsOf(c);
    const s = await open();
    const valid = await s.queryValidPaths(paths).catch(async (e: unknown) => {
      await s.close();
      throw e;
    });
    const missing = paths.filter((p) => !valid.includes(p));
    if (missing.length) {
      await s.close();
      throw new ApiError(
        404,
        "API_NOT_FOUND",
        `This coordinator's store lacks ${missing.slice(0, 3).join(", ")}.`,
      );
    }
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    // A failure midway ends the stream short: the client's import refuses a truncated export.
    void s
      .exportPaths(paths, out)
      .then(
        () => out.end(),
        (e: unknown) => out.destroy(e instanceof Error ? e : new Error(String(e))),
      )
      .finally(() => void s.close());
    return new Response(Readable.toWeb(out), {
      status: 200,
      headers: { "Content-Type": "application/x-nix-export", "X-Content-Type-Options": "nosniff" },
    });
  });
}
