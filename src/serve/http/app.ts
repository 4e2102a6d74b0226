import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { z } from "zod";
import type { CacheStatsView } from "../cache/cache-stats.js";
import type { CoordinatorApi } from "../coordinator-types.js";
import { answerError, ApiError, badRequest, notFound } from "./api-error.js";
import type { ApiEnv } from "./api-env.js";
import {
  BuildIdSchema,
  BuildsQuerySchema,
  describeIssues,
  DrvBaseSchema,
  SubmitRequestSchema,
  toSubmitRequest,
} from "./api-schemas.js";
import { authenticate, type AuthOptions } from "./auth.js";
import { StreamRegistry, streamEvents } from "./event-stream.js";
import { mountStoreRoutes, type StoreRoutesOptions } from "./store-routes.js";
import { mountPoolRoutes } from "./pool-routes.js";
import type { PoolStore } from "../pool-store.js";

export interface ApiAppOptions {
  coordinator: CoordinatorApi;
  auth: AuthOptions;
  /** Where unexpected errors are reported (the service's stderr). */
  log: (line: string) => void;
  /** True once the service stops taking builds (SIGTERM). */
  draining?: () => boolean;
  /** Adds the dashboard's pages at / (src/serve/dashboard/routes.ts). */
  mountDashboard?: (
    app: Hono<ApiEnv>,
    coordinator: CoordinatorApi,
    extras: { cacheStats?: () => CacheStatsView },
  ) => void;
  heartbeatMs?: number;
  /** This machine's store for clients on other machines (/api/store/*). */
  store?: StoreRoutesOptions;
  /** The pool's stores as one, for the gateway (/api/pool/*); none without a fleet. */
  pool?: PoolStore;
  /** The binary cache's numbers (GET /api/cache/stats); none when serve runs without the cache. */
  cacheStats?: () => CacheStatsView;
  /** The cache's numbers after they change: sent as `cache` events on /api/events (the dashboard's). */
  cacheWatch?: (fn: (view: CacheStatsView) => void) => () => void;
}

/** Request bodies are a list of derivations: a megabyte holds thousands. */
const MAX_BODY = 4 * 1024 * 1024;

function parse<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw badRequest(`${what}: ${describeIssues(r.error)}.`);
  return r.data;
}

/** The coordinator's HTTP app: the JSON API and its event stream under /api, the dashboard at /. */
export function createApiApp(o: ApiAppOptions): { app: Hono<ApiEnv>; streams: StreamRegistry } {
  const c0 = o.coordinator;
  const streams = new StreamRegistry();
  const app = new Hono<ApiEnv>();
  app.onError((e, c) => answerError(c, e, o.log));
  app.notFound((c) =>
    c.json({ code: "API_NOT_FOUND", message: `No such endpoint: ${c.req.method} ${c.req.path}.` }, 404),
  );
  app.use("*", authenticate(o.auth));

  const buildIdOf = (raw: string) => parse(BuildIdSchema, raw, "build id");
  const findBuild = async (raw: string) => {
    const id = buildIdOf(raw);
    const b = await c0.build(id);
    if (!b) throw notFound(`No build ${id} on this coordinator.`);
    return b;
  };

  app.get("/api/whoami", (c) => c.json(c.get("client")));
  app.get("/api/cache/stats", (c) => {
    if (!o.cacheStats) throw notFound("This coordinator serves no binary cache (nixpool serve --no-cache).");
    return c.json(o.cacheStats());
  });
  app.get("/api/builders", (c) => c.json(c0.builders()));
  app.get("/api/coordinators", async (c) => c.json((await c0.coordinators?.()) ?? []));
  app.get("/api/workers", (c) => c.json(c0.workers()));
  app.get("/api/autoscale", (c) => {
    const v = c0.autoscale();
    if (!v) throw notFound("This coordinator does not autoscale (no [autoscale.hetzner] in its inventory).");
    return c.json(v);
  });
  app.get("/api/builds", async (c) => {
    const q = parse(BuildsQuerySchema, c.req.query(), "query");
    return c.json(
      await c0.builds({
        ...(q.limit !== undefined ? { limit: q.limit } : {}),
        ...(q.status !== undefined ? { status: q.status } : {}),
        ...(q.client !== undefined ? { client: q.client } : {}),
      }),
    );
  });
  app.get("/api/builds/:id", async (c) => c.json(await findBuild(c.req.param("id"))));
  app.get("/api/builds/:id/log/:drv", async (c) => {
    const b = await findBuild(c.req.param("id"));
    const base = parse(DrvBaseSchema, c.req.param("drv"), "derivation");
    const d = b.derivations.find((x) => x.drv.endsWith(`/${base}`));
    if (!d) throw notFound(`Build ${b.id} has no derivation ${base}.`);
    const log = await c0.derivationLog(b.id, d.drv);
    if (log === undefined) throw notFound(`Derivation ${base} of build ${b.id} has no log (yet).`);
    return c.text(log, 200, { "X-Content-Type-Options": "nosniff" });
  });
  app.get("/api/builds/:id/timeline.svg", async (c) => {
    const b = await findBuild(c.req.param("id"));
    const svg = await c0.timelineSvg(b.id);
    if (svg === undefined) throw notFound(`Build ${b.id} has no timeline (yet).`);
    return c.body(svg, 200, {
      "Content-Type": "image/svg+xml",
      "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
      "X-Content-Type-Options": "nosniff",
    });
  });
  app.post(
    "/api/builds",
    bodyLimit({
      maxSize: MAX_BODY,
      onError: () => {
        throw new ApiError(413, "API_BAD_REQUEST", `The request body is over ${MAX_BODY / 1024 / 1024} MiB.`);
      },
    }),
    async (c) => {
      if (o.draining?.()) {
        throw new ApiError(
          503,
          "COORDINATOR_DRAINING",
          "The coordinator is stopping and takes no new builds.",
        );
      }
      if (!/^application\/json\b/i.test(c.req.header("content-type") ?? "")) {
        throw new ApiError(415, "API_BAD_REQUEST", "POST /api/builds takes Content-Type: application/json.");
      }
      const raw: unknown = await c.req.json().catch(() => {
        throw badRequest("The request body is not JSON.");
      });
      const req = toSubmitRequest(parse(SubmitRequestSchema, raw, "build request"));
      const client = c.get("client");
      if (/\btext\/event-stream\b/.test(c.req.header("accept") ?? "")) {
        return streamEvents(c, {
          source: c0,
          registry: streams,
          start: () => c0.submit(req, client),
          ...(o.heartbeatMs !== undefined ? { heartbeatMs: o.heartbeatMs } : {}),
        });
      }
      const id = c0.submit(req, client);
      return c.json((await c0.build(id)) ?? { id }, 201, { Location: `/api/builds/${id}` });
    },
  );
  app.delete("/api/builds/:id", async (c) => {
    const b = await findBuild(c.req.param("id"));
    await c0.cancel(b.id, c.get("client"));
    return c.json((await c0.build(b.id)) ?? b, 202);
  });
  mountStoreRoutes(app, o.store);
  if (o.pool) mountPoolRoutes(app, o.pool, () => c0.gatewayUids());
  app.get("/api/events", async (c) => {
    const q = c.req.query("build");
    const buildId = q === undefined ? undefined : (await findBuild(q)).id;
    const watch = o.cacheWatch;
    return streamEvents(c, {
      source: c0,
      registry: streams,
      ...(watch ? { also: (send) => watch((cache) => send({ type: "cache", cache })) } : {}),
      ...(buildId !== undefined ? { buildId } : {}),
      ...(o.heartbeatMs !== undefined ? { heartbeatMs: o.heartbeatMs } : {}),
    });
  });
  if (o.mountDashboard) o.mountDashboard(app, c0, o.cacheStats ? { cacheStats: o.cacheStats } : {});
  else
    app.get("/", (c) =>
      c.text("nixpool coordinator: the API is under /api (see docs/api.md); this build has no dashboard.\n"),
    );
  return { app, streams };
}
