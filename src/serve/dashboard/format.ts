import { stripAnsi } from "../../core/build-log.js";
import { formatSeconds } from "../../core/duration.js";
import { redact } from "../../core/redact.js";
import { markup, type Html } from "./html.js";

/** Milliseconds of an ISO time, or undefined when absent or not a time. */
export function parseTime(iso: string | undefined): number | undefined {
  if (iso === undefined) return undefined;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? undefined : ms;
}

/** "14:05:09" (UTC, as the page says), with the full time in `datetime` and the tooltip. */
export function renderTime(iso: string | undefined): Html {
  const ms = parseTime(iso);
  if (ms === undefined) return markup`<span class="none">-</span>`;
  const full = new Date(ms).toISOString();
  return markup`<time datetime="${full}" title="${full}">${full.slice(11, 19)}</time>`;
}

/**
 * How long from `from` to `to`; while `to` is absent, up to now, marked with data-since so the
 * page's script keeps counting.
 */
export function renderDuration(from: string | undefined, to: string | undefined, nowMs: number): Html {
  const start = parseTime(from);
  if (start === undefined) return markup`<span class="none">-</span>`;
  const end = parseTime(to);
  if (end !== undefined)
    return markup`<span class="duration">${formatSeconds(Math.max(0, end - start))}</span>`;
  const since = new Date(start).toISOString();
  return markup`<span class="duration" data-since="${since}">${formatSeconds(Math.max(0, nowMs - start))}</span>`;
}

/** A log line as a browser shows it: colour codes removed, secrets redacted (escaping is the template's). */
export function cleanLogLine(line: string): string {
  return redact(stripAnsi(line)).replace(/\r$/, "");
}

/** The last `max` lines of a log text, cleaned. */
export function logTail(text: string, max: number): string[] {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.slice(-max).map(cleanLogLine);
}

/** The link to a build's page. */
export function buildHref(id: string): string {
  return `/builds/${encodeURIComponent(id)}`;
}

/** A byte count for the page: 512 B, 3.4 KiB, 12.0 MiB, 1.2 GiB (the script's formatSize is the same). */
export function formatSize(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i] as string}`;
}
