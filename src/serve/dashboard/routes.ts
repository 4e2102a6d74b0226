import { readFileSync } from "node:fs";
import type { Context, Env, Hono } from "hono";
import type { CacheStatsView } from "../cache/cache-stats.js";
import type { BuildStatus, CoordinatorApi } from "../coordinator-types.js";
import { pickLogDerivations, renderBuildPage, renderTimelineContent } from "./build-page.js";
import { FINISHED } from "./build-rows.js";
import { cleanLogLine, logTail } from "./format.js";
import { markup } from "./html.js";
import { ASSET_PATHS, renderLayout } from "./layout.js";
import { renderOverviewPage } from "./overview-page.js";
import { HISTORY_FILTERS, renderHistoryPage } from "./history-page.js";

/** What the dashboard reads of the coordinator (a Coordinator is one). */
export type DashboardSource = Pick<
  CoordinatorApi,
  "builders" | "builds" | "build" | "derivationLog" | "timelineSvg" | "workers" | "autoscale" | "coordinators"
>;

/** What the overview shows beside the coordinator's own: the binary cache's numbers. */
export interface DashboardExtras {
  cacheStats?: () => CacheStatsView;
}

/**
 * Nothing runs on a page but its own script from this server, and nothing loads from elsewhere:
 * a name or a log line that slipped past escaping could still not run.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** Log lines per derivation on a build page; the whole log is one link away. */
const LOG_TAIL_LINES = 200;
const RECENT_BUILDS = 10;
const HISTORY_DEFAULT = 200;
const HISTORY_MAX = 5000;

/**
 * The static files sit beside the sources, in src/serve/dashboard/static/. From src/ (tsx) and
 * from dist/ (the built CLI) alike, three levels up is the package root.
 */
const STATIC_DIR = new URL("../../../src/serve/dashboard/static/", import.meta.url);

function readAsset(name: string): string {
  return readFileSync(new URL(name, STATIC_DIR), "utf8");
}

function setPageHeaders(c: Context): void {
  c.header("Content-Security-Policy", CONTENT_SECURITY_POLICY);
  c.header("X-Content-Type-Options", "nosniff");
  c.header("Referrer-Policy", "no-referrer");
  c.header("X-Frame-Options", "DENY");
  c.header("Cache-Control", "no-store");
}

function errorPage(c: Context, status: 400 | 404, title: string, message: string) {
  setPageHeaders(c);
  const body = markup`<h1>${title}</h1>
<p class="error">${message}</p>
<p><a href="/">Back to the overview</a></p>`;
  return c.html(renderLayout({ title, page: "error", body }).markup, status);
}

/**
 * Mounts the dashboard's pages and assets on the coordinator's app: `/` (overview), `/history`,
 * `/builds/:id` (with `/timeline`, `/timeline.svg` and `/log?drv=`), `/assets/*`. Authentication is the
 * app's middleware; live updates come from the app's `/api/events`.
 */
export function mountDashboard<E extends Env>(
  app: Hono<E>,
  coordinator: DashboardSource,
  extras: DashboardExtras = {},
): void {
  const assets = new Map<string, { body: string; type: string }>([
    [ASSET_PATHS.script, { body: readAsset("dashboard.js"), type: "text/javascript; charset=utf-8" }],
    [ASSET_PATHS.style, { body: readAsset("dashboard.css"), type: "text/css; charset=utf-8" }],
    [ASSET_PATHS.icon, { body: readAsset("favicon.svg"), type: "image/svg+xml" }],
  ]);
  for (const [path, asset] of assets) {
    app.get(path, (c) => {
      c.header("X-Content-Type-Options", "nosniff");
      c.header("Cache-Control", "no-cache");
      return c.body(asset.body, 200, { "Content-Type": asset.type });
    });
  }

  app.get("/", async (c) => {
    const [queued, running, latest] = await Promise.all([
      coordinator.builds({ status: "queued" }),
      coordinator.builds({ status: "running" }),
      coordinator.builds({ limit: RECENT_BUILDS * 3 }),
    ]);
    setPageHeaders(c);
    const autoscale = coordinator.autoscale();
    const coordinators = await coordinator.coordinators?.().catch(() => undefined);
    const page = renderOverviewPage({
      builders: coordinator.builders(),
      // Next to run first.
      queued: queued.reverse(),
      running,
      recent: latest.filter((b) => FINISHED.includes(b.status)).slice(0, RECENT_BUILDS),
      workers: coordinator.workers(),
      nowMs: Date.now(),
      ...(extras.cacheStats ? { cache: extras.cacheStats() } : {}),
      ...(autoscale ? { autoscale } : {}),
      ...(coordinators ? { coordinators } : {}),
    });
    return c.html(page.markup);
  });

  app.get("/history", async (c) => {
    const statusText = c.req.query("status") ?? "all";
    const status = HISTORY_FILTERS.find((f) => f === statusText);
    if (status === undefined) {
      return errorPage(c, 400, "Unknown status", `status must be one of ${HISTORY_FILTERS.join(", ")}.`);
    }
    const limitText = c.req.query("limit") ?? String(HISTORY_DEFAULT);
    const limit = /^\d{1,6}$/.test(limitText) ? Number(limitText) : NaN;
    if (!(limit >= 1 && limit <= HISTORY_MAX)) {
      return errorPage(c, 400, "Bad limit", `limit must be a whole number from 1 to ${HISTORY_MAX}.`);
    }
    const query: { limit: number; status?: BuildStatus } = { limit };
    if (status !== "all") query.status = status;
    setPageHeaders(c);
    const page = renderHistoryPage({
      builds: await coordinator.builds(query),
      status,
      limit,
      nowMs: Date.now(),
    });
    return c.html(page.markup);
  });

  const findBuild = async (c: Context) => {
    const id = c.req.param("id") ?? "";
    return { id, build: await coordinator.build(id) };
  };
  const noBuild = (c: Context, id: string) =>
    errorPage(
      c,
      404,
      "No such build",
      `The coordinator knows no build ${id}: see the history for those it keeps.`,
    );

  app.get("/builds/:id", async (c) => {
    const { id, build } = await findBuild(c);
    if (build === undefined) return noBuild(c, id);
    const picked = pickLogDerivations(build.derivations);
    const texts = await Promise.all(picked.map((d) => coordinator.derivationLog(id, d.drv)));
    const logs = picked.flatMap((d, i) => {
      const text = texts[i];
      return text === undefined || text === ""
        ? []
        : [{ drv: d.drv, name: d.name, lines: logTail(text, LOG_TAIL_LINES) }];
    });
    const timelineSvg = await coordinator.timelineSvg(id);
    setPageHeaders(c);
    const page = renderBuildPage({
      build,
      logs,
      nowMs: Date.now(),
      ...(timelineSvg !== undefined ? { timelineSvg } : {}),
    });
    return c.html(page.markup);
  });

  // The timeline box's content, for the page's script: 200 with the chart or why there is none.
  app.get("/builds/:id/timeline", async (c) => {
    const { id, build } = await findBuild(c);
    if (build === undefined) return noBuild(c, id);
    const svg = await coordinator.timelineSvg(id);
    setPageHeaders(c);
    return c.html(renderTimelineContent(build, svg).markup);
  });

  app.get("/builds/:id/timeline.svg", async (c) => {
    const { id, build } = await findBuild(c);
    if (build === undefined) return noBuild(c, id);
    const svg = await coordinator.timelineSvg(id);
    if (svg === undefined) return errorPage(c, 404, "No timeline", `Build ${id} has no timeline yet.`);
    setPageHeaders(c);
    return c.body(svg, 200, { "Content-Type": "image/svg+xml; charset=utf-8" });
  });

  app.get("/builds/:id/log", async (c) => {
    const { id, build } = await findBuild(c);
    if (build === undefined) return noBuild(c, id);
    const drv = c.req.query("drv") ?? "";
    const text = build.derivations.some((d) => d.drv === drv)
      ? await coordinator.derivationLog(id, drv)
      : undefined;
    if (text === undefined)
      return errorPage(c, 404, "No such log", `Build ${id} has no log for ${drv || "(no drv given)"}.`);
    setPageHeaders(c);
    const lines = text.split("\n").map(cleanLogLine).join("\n");
    return c.body(lines, 200, { "Content-Type": "text/plain; charset=utf-8" });
  });
}
