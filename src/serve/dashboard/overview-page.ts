import { formatMoney } from "../../core/cost.js";
import type {
  AutoscaleView,
  BuilderView,
  BuildSummary,
  CoordinatorView,
  WorkerView,
} from "../coordinator-types.js";
import { renderAutoscaleSection } from "./autoscale-section.js";
import type { CacheStatsView } from "../cache/cache-stats.js";
import { renderBuildRowTemplate, renderBuildTable } from "./build-rows.js";
import { renderCacheSection } from "./cache-section.js";
import { buildHref, renderDuration, renderTime } from "./format.js";
import { markup, type Html } from "./html.js";
import { renderLayout } from "./layout.js";

/** Everything the overview shows, as the coordinator reports it. */
export interface OverviewData {
  builders: readonly BuilderView[];
  queued: readonly BuildSummary[];
  running: readonly BuildSummary[];
  /** The last few finished builds, newest first. */
  recent: readonly BuildSummary[];
  workers: readonly WorkerView[];
  nowMs: number;
  /** The binary cache's numbers; absent when serve runs without it. */
  cache?: CacheStatsView;
  /** The autoscaler's state; absent without `[autoscale.hetzner]`. */
  autoscale?: AutoscaleView;
  /** The coordinators sharing the pool (shown when there are several). */
  coordinators?: readonly CoordinatorView[];
}

/** Several coordinators on one database: which are alive, and which one this page comes from. */
function renderCoordinators(all: readonly CoordinatorView[] | undefined): Html | string {
  if (!all || all.length < 2) return "";
  const alive = all.filter((c) => c.alive).length;
  return markup`<section id="coordinators-section">
<h2>Coordinators <small>${alive} of ${all.length} alive, sharing the pool</small></h2>
<table class="coordinators">
<thead><tr><th>Coordinator</th><th>API</th><th>State</th><th>Last heartbeat</th></tr></thead>
<tbody>
${all.map(
  (c) =>
    markup`<tr data-coordinator="${c.id}"><td>${c.id}${c.self ? " (this one)" : ""}</td><td>${c.url ?? "socket only"}</td><td>${c.alive ? "alive" : "dead"}</td><td>${c.heartbeatAt}</td></tr>`,
)}
</tbody>
</table>
</section>`;
}

/** "2/4" slots in use with a meter; the script updates both from builder events. */
function renderSlots(b: BuilderView): Html {
  const max = Math.max(1, b.slots);
  return markup`<meter data-field="slots-meter" min="0" max="${max}" value="${b.inUse}"></meter>
<span data-field="slots-text">${slotsText(b)}</span>`;
}

/** "1/2", and "(+1 by other coordinators)" when several share the pool; the script writes the same. */
function slotsText(b: BuilderView): string {
  const elsewhere = b.inUseElsewhere ?? 0;
  return `${b.inUse}/${b.slots}${elsewhere > 0 ? ` (+${elsewhere} by other coordinators)` : ""}`;
}

/** The derivations a builder runs now, each linked to its build. */
function renderCurrent(current: BuilderView["current"]): Html {
  if (current.length === 0) return markup`<span class="none">idle</span>`;
  const items = current.map(
    (c) => markup`<li><a href="${buildHref(c.buildId)}" title="${c.drv}">${c.name}</a></li>`,
  );
  return markup`<ul class="current">${items}</ul>`;
}

/** Health, and why a builder is not up: its last error and when it is probed next. */
function renderHealth(b: BuilderView): Html {
  const up = b.health === "up";
  const why = up
    ? ""
    : [b.lastError, b.nextProbeAt !== undefined ? `next probe ${b.nextProbeAt}` : undefined]
        .filter((s) => s !== undefined)
        .join("; ");
  const error = !up && b.lastError !== undefined ? markup`<div class="error">${b.lastError}</div>` : "";
  return markup`<span class="health health-${b.health}" title="${why}">${b.health}</span>${error}`;
}

/** One builder as a row; the script updates its data-field cells from builder events. */
function renderBuilderRow(b: BuilderView): Html {
  return markup`<tr data-builder="${b.name}">
<td class="name">${b.name}</td>
<td>${b.systems.join(", ")}</td>
<td data-field="health">${renderHealth(b)}</td>
<td data-field="slots">${renderSlots(b)}</td>
<td data-field="speed">${b.speedFactor}</td>
<td data-field="trust">${b.trust}</td>
<td data-field="current">${renderCurrent(b.current)}</td>
</tr>`;
}

function renderBuilders(builders: readonly BuilderView[]): Html {
  const inUse = builders.reduce((n, b) => n + b.inUse, 0);
  const slots = builders.reduce((n, b) => n + b.slots, 0);
  const up = builders.filter((b) => b.health === "up").length;
  const rows =
    builders.length === 0
      ? markup`<tr class="empty"><td colspan="7">no builders: start some with nixpool local up, or list them in nixpool.toml</td></tr>`
      : builders.map(renderBuilderRow);
  return markup`<section id="builders-section">
<h2>Builders <small><span data-count="builders-up">${up}</span> of ${builders.length} up, <span data-count="slots-in-use">${inUse}</span>/<span data-count="slots">${slots}</span> slots in use</small></h2>
<table class="builders">
<thead><tr><th>Builder</th><th>Systems</th><th>Health</th><th>Slots</th><th>Speed</th><th>Trust</th><th>Running now</th></tr></thead>
<tbody id="builders">
${rows}
</tbody>
</table>
</section>`;
}

function renderWorkerRow(w: WorkerView, nowMs: number): Html {
  return markup`<tr data-worker="${w.name}">
<td class="name">${w.name}</td>
<td>${w.serverType}</td>
<td>${renderTime(w.startedAt)}</td>
<td>${renderDuration(w.startedAt, undefined, nowMs)}</td>
<td class="money">${formatMoney(w.costSoFar, w.currency)}</td>
</tr>`;
}

function renderWorkers(workers: readonly WorkerView[], nowMs: number): Html {
  if (workers.length === 0) {
    return markup`<section id="workers-section"><h2>Cloud workers</h2><p class="none">No rented cloud workers.</p></section>`;
  }
  // Workers may be billed in different currencies: one total per currency.
  const totals = new Map<string, number>();
  for (const w of workers) totals.set(w.currency, (totals.get(w.currency) ?? 0) + w.costSoFar);
  const total = [...totals].map(([currency, amount]) => formatMoney(amount, currency)).join(" + ");
  return markup`<section id="workers-section">
<h2>Cloud workers <small>${workers.length} rented, ${total} so far</small></h2>
<table class="workers">
<thead><tr><th>Worker</th><th>Type</th><th>Started</th><th>Running for</th><th>Cost so far</th></tr></thead>
<tbody>
${workers.map((w) => renderWorkerRow(w, nowMs))}
</tbody>
</table>
</section>`;
}

/** The overview at `/`: builders, the queue, running builds, rented workers, the last builds. */
export function renderOverviewPage(d: OverviewData): Html {
  const body = markup`<h1>Pool overview</h1>
<p class="summary"><span data-count="queued">${d.queued.length}</span> queued, <span data-count="running">${d.running.length}</span> running.</p>
${renderBuilders(d.builders)}
<section id="queue-section">
<h2>Queue</h2>
${renderBuildTable("queued-builds", d.queued, d.nowMs, "Nothing waits.")}
</section>
<section id="running-section">
<h2>Running</h2>
${renderBuildTable("running-builds", d.running, d.nowMs, "Nothing runs.")}
</section>
${renderCoordinators(d.coordinators)}
${renderWorkers(d.workers, d.nowMs)}
${renderAutoscaleSection(d.autoscale)}
${renderCacheSection(d.cache)}
<section id="recent-section">
<h2>Finished lately <small><a href="/history">all history</a></small></h2>
${renderBuildTable("recent-builds", d.recent, d.nowMs, "No finished build yet.")}
</section>
${renderBuildRowTemplate()}`;
  return renderLayout({ title: "Overview", page: "overview", body });
}
