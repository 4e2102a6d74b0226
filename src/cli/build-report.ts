import { phaseTotals, type DerivationRecord } from "../core/build-record.js";
import type { DispatcherChoice } from "../core/dispatch/choose-dispatcher.js";
import { compareNatural } from "../core/natural-order.js";
import { sanitizeTerminalLine } from "./build-status.js";
import { formatSeconds, renderTable } from "./output.js";

export interface DispatchReportOptions {
  wallMs: number;
  outputs: readonly string[];
  /** The GC root, or null when no out-link was made. */
  outLink: string | null;
  dispatcher: DispatcherChoice;
}

/** Records in the order they started; never-started ones after, ties in natural order of names. */
export function sortByStart(records: readonly DerivationRecord[]): DerivationRecord[] {
  return [...records].sort((a, b) => {
    if (a.startedMs !== b.startedMs) {
      if (a.startedMs === null) return 1;
      if (b.startedMs === null) return -1;
      return a.startedMs - b.startedMs;
    }
    return compareNatural(a.name, b.name);
  });
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/**
 * The report after a dispatched build: one row per derivation (builder, attempts, time queued,
 * uploading, building, downloading, status) in start order, why attempts were retried, a
 * summary line naming the dispatcher and why it ran, then the outputs.
 */
export function renderDispatchReport(
  records: readonly DerivationRecord[],
  options: DispatchReportOptions,
): string {
  const sorted = sortByStart(records);
  // A pool of trusted builders only, nothing verified: every row would say "trusted".
  const showTrust = records.some((r) => r.trust === "untrusted" || (r.builds?.length ?? 0) > 1);
  const time = (ms: number, present: boolean) => (present ? formatSeconds(ms) : "-");
  const rows = sorted.map((r) => {
    const t = phaseTotals(r);
    const has = (phase: string) => r.spans.some((s) => s.phase === phase);
    return [
      r.name,
      r.builder ?? "-",
      String(r.attempts),
      time(t.queuedMs, r.readyMs !== null && (r.spans.length > 0 || t.queuedMs > 0)),
      time(t.uploadMs, has("upload")),
      time(t.buildMs, has("build")),
      time(t.downloadMs, has("download")),
      r.status,
      ...(showTrust ? [describeTrust(r)] : []),
    ];
  });
  const retryLines = sorted.flatMap((r) =>
    r.retries.map((x, i) =>
      sanitizeTerminalLine(`  ${r.name}, attempt ${i + 1} on ${x.builder}: ${x.reason}`),
    ),
  );
  const count = (status: DerivationRecord["status"]) => records.filter((r) => r.status === status).length;
  const retried = records.filter((r) => r.retries.length > 0).length;
  const failed = count("failed");
  const skipped = count("skipped");
  const dispatcher = options.dispatcher.kind === "nixpool" ? "nixpool's dispatcher" : "Nix's build hook";
  const summary =
    `${count("built")} built, ${count("cached")} cached, ${retried} retried` +
    (failed > 0 ? `, ${failed} failed` : "") +
    (skipped > 0 ? `, ${skipped} skipped` : "") +
    ` in ${formatSeconds(options.wallMs)}, by ${dispatcher} (${options.dispatcher.reason}).`;
  const parts = [
    rows.length > 0
      ? renderTable(
          [
            "DERIVATION",
            "BUILDER",
            "ATTEMPTS",
            "QUEUED",
            "UPLOAD",
            "BUILD",
            "DOWNLOAD",
            "STATUS",
            ...(showTrust ? ["TRUST"] : []),
          ],
          rows,
        )
      : "Nothing to build: every output was already in the local store.",
    ...(retryLines.length > 0
      ? ["", `Retried (${plural(retryLines.length, "attempt")}):`, ...retryLines]
      : []),
    "",
    summary,
  ];
  if (options.outputs.length > 0) {
    parts.push(
      options.outLink === null ? "Outputs:" : `Outputs (GC root ${options.outLink}):`,
      ...options.outputs.map((o) => `  ${o}`),
    );
  }
  return parts.join("\n");
}

/** "untrusted", "trusted, verified on 2 builders", "-" (nothing built it in this build). */
function describeTrust(r: DerivationRecord): string {
  if (r.status === "cached" || r.trust === undefined) return "-";
  const builds = r.builds?.length ?? 0;
  return r.verified ? `${r.trust}, verified on ${builds} builders` : r.trust;
}
