import { formatSeconds } from "../../core/duration.js";
import type { BuildStatus, BuildSummary } from "../coordinator-types.js";
import { renderBuildRowTemplate, renderBuildTable } from "./build-rows.js";
import { parseTime } from "./format.js";
import { markup, type Html } from "./html.js";
import { renderLayout } from "./layout.js";

export const HISTORY_FILTERS: readonly (BuildStatus | "all")[] = [
  "all",
  "queued",
  "running",
  "succeeded",
  "failed",
  "cancelled",
];

export interface HistoryData {
  /** Newest first. */
  builds: readonly BuildSummary[];
  status: BuildStatus | "all";
  limit: number;
  nowMs: number;
}

/** Durations (start to finish) of the finished builds shown: how many, median, longest. */
export function summariseDurations(builds: readonly BuildSummary[]): {
  count: number;
  medianMs: number;
  maxMs: number;
} {
  const ms = builds
    .map((b) => {
      const start = parseTime(b.startedAt);
      const end = parseTime(b.finishedAt);
      return start !== undefined && end !== undefined ? Math.max(0, end - start) : undefined;
    })
    .filter((n) => n !== undefined)
    .sort((a, b) => a - b);
  if (ms.length === 0) return { count: 0, medianMs: 0, maxMs: 0 };
  const mid = Math.floor(ms.length / 2);
  const medianMs = ms.length % 2 === 1 ? (ms[mid] ?? 0) : ((ms[mid - 1] ?? 0) + (ms[mid] ?? 0)) / 2;
  return { count: ms.length, medianMs, maxMs: ms[ms.length - 1] ?? 0 };
}

/** Every build the history keeps, newest first, with how long each waited and took. */
export function renderHistoryPage(d: HistoryData): Html {
  const s = summariseDurations(d.builds);
  const filters = HISTORY_FILTERS.map((f) => {
    const current = f === d.status ? markup` aria-current="true"` : "";
    return markup`<a href="/history${f === "all" ? "" : `?status=${f}`}"${current}>${f}</a>`;
  });
  const shown = `${d.builds.length} build${d.builds.length === 1 ? "" : "s"} shown (at most ${d.limit})`;
  const durations =
    s.count > 0
      ? `; of the ${s.count} finished: median ${formatSeconds(s.medianMs)}, longest ${formatSeconds(s.maxMs)}`
      : "";
  const body = markup`<h1>History</h1>
<nav class="filters">${filters}</nav>
<p class="summary">${shown}${durations}.</p>
${renderBuildTable("history-builds", d.builds, d.nowMs, "No builds yet.")}
${renderBuildRowTemplate()}`;
  return renderLayout({ title: "History", page: "history", body });
}
