import type { BuildDetail, DerivationView } from "../coordinator-types.js";
import { progressText, renderStatus } from "./build-rows.js";
import { buildHref, renderDuration, renderTime } from "./format.js";
import { markup, trustedMarkup, type Html } from "./html.js";
import { renderLayout } from "./layout.js";

/** The last lines of one derivation's log, already cleaned (format.ts logTail). */
export interface DerivationLogTail {
  drv: string;
  name: string;
  lines: readonly string[];
}

export interface BuildPageData {
  build: BuildDetail;
  logs: readonly DerivationLogTail[];
  /** The Gantt chart (core/timeline-svg.ts, as `nixpool build --timeline` draws it), when there is one. */
  timelineSvg?: string;
  nowMs: number;
}

const NONE = markup`<span class="none">-</span>`;

/** How many log panes a build page shows at most: a big build links the rest. */
export const MAX_LOG_PANES = 24;

/**
 * The derivations whose logs a build page shows: those running, then those failed, then the
 * latest finished; never one that has not started (it has no log).
 */
export function pickLogDerivations(
  derivations: readonly DerivationView[],
  max = MAX_LOG_PANES,
): DerivationView[] {
  const rank = (d: DerivationView) => (d.status === "running" ? 0 : d.status === "failed" ? 1 : 2);
  return derivations
    .filter((d) => d.startedAt !== undefined)
    .sort((a, b) => rank(a) - rank(b) || (b.finishedAt ?? "").localeCompare(a.finishedAt ?? ""))
    .slice(0, max);
}

/** The link to a derivation's whole log (routes.ts serves it as text). */
export function logHref(buildId: string, drv: string): string {
  return `${buildHref(buildId)}/log?drv=${encodeURIComponent(drv)}`;
}

/** One derivation as a row; the script updates the data-field cells from derivation events. */
function renderDerivationRow(buildId: string, d: DerivationView, nowMs: number): Html {
  const error = d.error !== undefined ? markup`<div class="error">${d.error}</div>` : "";
  return markup`<tr data-drv="${d.drv}" data-status="${d.status}">
<td class="name"><a href="${logHref(buildId, d.drv)}" title="${d.drv}">${d.name}</a></td>
<td class="drv"><code>${d.drv}</code></td>
<td data-field="builder">${d.builder ?? NONE}</td>
<td data-field="status">${renderStatus(d.status)}${error}</td>
<td data-field="started">${renderTime(d.startedAt)}</td>
<td data-field="finished">${renderTime(d.finishedAt)}</td>
<td data-field="duration">${renderDuration(d.startedAt, d.finishedAt, nowMs)}</td>
<td data-field="attempts">${d.attempts}</td>
</tr>`;
}

/** One derivation's log pane; live lines are appended to its <pre>. */
function renderLogPane(buildId: string, log: DerivationLogTail): Html {
  const lines = log.lines.map((l) => `${l}\n`);
  return markup`<section class="log" data-log-drv="${log.drv}">
<h3><a href="${logHref(buildId, log.drv)}" title="${log.drv}">${log.name}</a></h3>
<pre>${lines}</pre>
</section>`;
}

/**
 * What the timeline box holds: the chart, or why there is none yet. The page's script fetches
 * the same from `/builds/ID/timeline` when the build's end arrives (routes.ts).
 */
export function renderTimelineContent(b: BuildDetail, svg: string | undefined): Html {
  if (svg !== undefined) {
    // The SVG is nixpool's own: renderTimelineSvg escapes every text it holds.
    return markup`${trustedMarkup(svg)}<p class="timeline-link"><a href="${buildHref(b.id)}/timeline.svg">the chart alone (SVG)</a></p>`;
  }
  const why =
    b.finishedAt !== undefined
      ? "No timeline was recorded for this build."
      : "The timeline is drawn when the build has finished.";
  return markup`<p class="none">${why}</p>`;
}

function renderTimeline(b: BuildDetail, svg: string | undefined): Html {
  return markup`<section id="timeline-section">
<h2>Timeline</h2>
<div id="timeline" class="timeline">${renderTimelineContent(b, svg)}</div>
</section>`;
}

function renderFacts(b: BuildDetail, nowMs: number): Html {
  const c = b.counts;
  const took = b.startedAt === undefined ? NONE : renderDuration(b.startedAt, b.finishedAt, nowMs);
  return markup`<dl class="build-facts">
<dt>Label</dt><dd>${b.label}</dd>
<dt>Client</dt><dd>${b.client}</dd>
<dt>Status</dt><dd id="build-status">${renderStatus(b.status)}</dd>
<dt>Derivations</dt><dd><span data-build-count="total">${c.total}</span> in all: <span data-build-count="done">${c.done}</span> done, <span data-build-count="running">${c.running}</span> running, <span data-build-count="queued">${c.queued}</span> queued, <span data-build-count="failed">${c.failed}</span> failed <progress id="build-progress" value="${c.done}" max="${Math.max(1, c.total)}" title="${progressText(c)}"></progress></dd>
<dt>Submitted</dt><dd>${renderTime(b.submittedAt)}</dd>
<dt>Started</dt><dd id="build-started">${renderTime(b.startedAt)}</dd>
<dt>Finished</dt><dd id="build-finished">${renderTime(b.finishedAt)}</dd>
<dt>Took</dt><dd id="build-duration">${took}</dd>
</dl>`;
}

/** A build: its state and counts, its derivations, their logs (live), and the Gantt timeline. */
export function renderBuildPage(d: BuildPageData): Html {
  const b = d.build;
  const error =
    b.error !== undefined
      ? markup`<p class="error" id="build-error"><code>${b.error.code}</code> ${b.error.message}</p>`
      : "";
  const outputs =
    b.outputs.length > 0
      ? markup`<h2>Outputs</h2><ul class="outputs">${b.outputs.map((o) => markup`<li><code>${o}</code></li>`)}</ul>`
      : "";
  const logs =
    d.logs.length === 0
      ? markup`<p class="none" id="no-logs">No log lines yet.</p>`
      : d.logs.map((l) => renderLogPane(b.id, l));
  const blankDerivation: DerivationView = { drv: "", name: "", status: "queued", attempts: 0 };
  const body = markup`<h1>Build <code>${b.id}</code></h1>
${renderFacts(b, d.nowMs)}
${error}
${outputs}
<section id="derivations-section">
<h2>Derivations</h2>
<table class="derivations">
<thead><tr><th>Name</th><th>Derivation</th><th>Builder</th><th>Status</th><th>Started</th><th>Finished</th><th>Took</th><th>Attempts</th></tr></thead>
<tbody id="derivations">
${b.derivations.map((dv) => renderDerivationRow(b.id, dv, d.nowMs))}
</tbody>
</table>
</section>
<section id="logs-section">
<h2>Logs <small>the last lines of each derivation; live while it builds</small></h2>
<div id="logs">
${logs}
</div>
</section>
${renderTimeline(b, d.timelineSvg)}
<template id="log-pane-template">${renderLogPane(b.id, { drv: "", name: "", lines: [] })}</template>
<template id="derivation-row-template">${renderDerivationRow(b.id, blankDerivation, d.nowMs)}</template>`;
  return renderLayout({ title: `Build ${b.id}`, page: "build", buildId: b.id, body });
}
