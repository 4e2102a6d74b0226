import type { BuildStatus, BuildSummary } from "../coordinator-types.js";
import { buildHref, renderDuration, renderTime } from "./format.js";
import { markup, type Html } from "./html.js";

/** A status as a badge; its class colours it (status-running, status-failed…). */
export function renderStatus(status: string): Html {
  return markup`<span class="status status-${status}">${status}</span>`;
}

/** "3/10", "3/10, 1 failed": the page's script writes the same text (static/dashboard.js). */
export function progressText(counts: BuildSummary["counts"]): string {
  return `${counts.done}/${counts.total}${counts.failed > 0 ? `, ${counts.failed} failed` : ""}`;
}

/** "3/10" with a progress bar, and the failures when there are any. */
export function renderProgress(counts: BuildSummary["counts"]): Html {
  const max = Math.max(1, counts.total);
  return markup`<progress data-field="progress" value="${counts.done}" max="${max}"></progress>
<span data-field="progress-text">${progressText(counts)}</span>`;
}

export const BUILD_COLUMNS = [
  "Build",
  "Label",
  "Client",
  "Status",
  "Progress",
  "Submitted",
  "Waited",
  "Took",
];

const NONE = markup`<span class="none">-</span>`;

/**
 * One build as a table row. Every cell the live script updates carries data-field; the same
 * function renders the empty template the script clones for a build it has not seen yet.
 */
export function renderBuildRow(b: BuildSummary, nowMs: number): Html {
  const took = b.startedAt === undefined ? NONE : renderDuration(b.startedAt, b.finishedAt, nowMs);
  return markup`<tr data-build-id="${b.id}" data-status="${b.status}">
<td><a data-field="id" href="${buildHref(b.id)}">${b.id}</a></td>
<td data-field="label">${b.label}</td>
<td data-field="client">${b.client}</td>
<td data-field="status">${renderStatus(b.status)}</td>
<td class="progress">${renderProgress(b.counts)}</td>
<td data-field="submitted">${renderTime(b.submittedAt)}</td>
<td data-field="wait">${renderDuration(b.submittedAt, b.startedAt ?? b.finishedAt, nowMs)}</td>
<td data-field="duration">${took}</td>
</tr>`;
}

function renderEmptyRow(text: string): Html {
  return markup`<tr class="empty"><td colspan="${BUILD_COLUMNS.length}">${text}</td></tr>`;
}

/** A table of builds with an id its script finds; `empty` is shown while there are none. */
export function renderBuildTable(
  id: string,
  builds: readonly BuildSummary[],
  nowMs: number,
  empty: string,
): Html {
  const rows = builds.length === 0 ? renderEmptyRow(empty) : builds.map((b) => renderBuildRow(b, nowMs));
  return markup`<table class="builds">
<thead><tr>${BUILD_COLUMNS.map((c) => markup`<th>${c}</th>`)}</tr></thead>
<tbody id="${id}" data-empty="${empty}">
${rows}
</tbody>
</table>`;
}

/** The row the script clones for a build that appears after the page was rendered. */
export function renderBuildRowTemplate(): Html {
  const blank: BuildSummary = {
    id: "",
    label: "",
    client: "",
    status: "queued",
    submittedAt: "",
    counts: { total: 0, done: 0, failed: 0, running: 0, queued: 0 },
  };
  return markup`<template id="build-row-template">${renderBuildRow(blank, 0)}</template>`;
}

/** Finished statuses: such a build is history. */
export const FINISHED: readonly BuildStatus[] = ["succeeded", "failed", "cancelled"];
