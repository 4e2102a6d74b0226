import { readFile } from "node:fs/promises";
import type { DerivationRecord } from "../core/build-record.js";
import { renderTimelineSvg } from "../core/timeline-svg.js";
import { statePaths } from "../config/state-paths.js";
import type { BuilderState } from "../core/dispatch/scheduler.js";
import type { Builder } from "../core/builder.js";
import type { BuildRun } from "../dispatch/build-run.js";
import type {
  BuildCounts,
  BuildDetail,
  BuildId,
  BuilderHealth,
  BuilderView,
  BuildReport,
  BuildStatus,
  BuildSummary,
  ClientIdentity,
  DerivationView,
  SubmitRequest,
} from "./coordinator-types.js";
import type { HistoryStore, StoredRecords } from "./history-store.js";
import type { TransferCounts } from "./transfer-counts.js";

/** ms since the epoch → ISO string. */
export const isoAt = (ms: number): string => new Date(ms).toISOString();

/**
 * A dispatcher record as the API shows it: times as ISO strings from the build's start; what was
 * still queued or running when the build was cancelled or stopped is "cancelled".
 */
export function toDerivationView(r: DerivationRecord, buildStartMs: number, ended: boolean): DerivationView {
  const unfinished = r.status === "queued" || r.status === "running";
  const v: DerivationView = {
    drv: r.drv,
    name: r.name,
    status: ended && unfinished ? "cancelled" : r.status,
    attempts: r.attempts,
  };
  if (r.builder !== null) v.builder = r.builder;
  if (r.trust !== undefined) v.trust = r.trust;
  if (r.startedMs !== null) v.startedAt = isoAt(buildStartMs + r.startedMs);
  if (r.finishedMs !== null) v.finishedAt = isoAt(buildStartMs + r.finishedMs);
  if (r.error !== null) v.error = r.error;
  return v;
}

/** Counts of a build's needed derivations: done (built or found built), failed (or skipped), running, queued. */
export function countRecords(records: Iterable<DerivationRecord>): BuildCounts {
  const c: BuildCounts = { total: 0, done: 0, failed: 0, running: 0, queued: 0 };
  for (const r of records) {
    c.total++;
    if (r.status === "built" || r.status === "cached") c.done++;
    else if (r.status === "failed" || r.status === "skipped") c.failed++;
    else if (r.status === "running") c.running++;
    else c.queued++;
  }
  return c;
}

/** What the board and the fleet know of one builder, with what runs there now. */
export function toBuilderView(
  b: Builder,
  state: BuilderState | undefined,
  health: BuilderHealth,
  current: BuilderView["current"],
  nextProbeAt: string | undefined,
): BuilderView {
  const v: BuilderView = {
    name: b.name,
    systems: [...b.systems],
    slots: b.maxJobs,
    inUse: state?.running ?? 0,
    health,
    speedFactor: b.speedFactor,
    trust: b.trust,
    current,
  };
  if (state?.downReason) v.lastError = state.downReason;
  if (nextProbeAt !== undefined) v.nextProbeAt = nextProbeAt;
  return v;
}

/** What a summary or detail of a build still in memory is drawn from (the coordinator's live build). */
export interface LiveBuildView {
  id: BuildSummary["id"];
  label: string;
  client: { user: string };
  status: BuildSummary["status"];
  submittedMs: number;
  startedMs?: number | undefined;
  finishedMs?: number | undefined;
  run: { records: Map<string, DerivationRecord>; t0: number };
  outputs: Iterable<string>;
  error?: { code: string; message: string } | undefined;
  report?: BuildDetail["report"] | undefined;
}

/** A build the coordinator runs now: its request, its dispatcher run, and what it showed last. */
export interface LiveBuild {
  id: BuildId;
  seq: number;
  label: string;
  client: ClientIdentity;
  req: SubmitRequest;
  submittedMs: number;
  startedMs?: number;
  finishedMs?: number;
  status: BuildStatus;
  run: BuildRun;
  /** Each derivation as last shown (JSON), to send only changes. */
  shown: Map<string, string>;
  outputs: string[];
  error?: { code: string; message: string };
  report?: BuildReport;
  cancelledBy?: string;
  /** The fleet's transfer counts when the build was submitted. */
  sentAtStart: TransferCounts;
  done: Promise<BuildDetail>;
  resolve: (d: BuildDetail) => void;
}

export function liveSummary(b: LiveBuildView): BuildSummary {
  const s: BuildSummary = {
    id: b.id,
    label: b.label,
    client: b.client.user,
    status: b.status,
    submittedAt: isoAt(b.submittedMs),
    counts: countRecords(b.run.records.values()),
  };
  if (b.startedMs !== undefined) s.startedAt = isoAt(b.startedMs);
  if (b.finishedMs !== undefined) s.finishedAt = isoAt(b.finishedMs);
  return s;
}

/** A build's detail as a summary (its list entry, a `build` event). */
export function summaryOf(d: BuildDetail): BuildSummary {
  const { derivations: _d, outputs: _o, error: _e, report: _r, ...summary } = d;
  return summary;
}

export function liveDetail(b: LiveBuildView): BuildDetail {
  const ended = b.finishedMs !== undefined;
  return {
    ...liveSummary(b),
    derivations: [...b.run.records.values()].map((r) => toDerivationView(r, b.run.t0, ended)),
    outputs: [...b.outputs],
    ...(b.error ? { error: { ...b.error } } : {}),
    ...(b.report ? { report: b.report } : {}),
  };
}

/**
 * A finished build's report, as a local build's result has it. `slots`: the pool's builders now;
 * a builder that left since (a deleted cloud worker) is added from the records.
 */
export function reportOf(
  run: Pick<BuildRun, "records" | "t0" | "now" | "graph">,
  slots: { name: string; slots: number }[],
  transfers: TransferCounts,
): BuildReport {
  const usage = process.resourceUsage();
  const records = [...run.records.values()];
  const builders = [...slots];
  for (const r of records) {
    for (const sp of r.spans) {
      if (sp.builder === "local" || slots.some((b) => b.name === sp.builder)) continue;
      const gone = builders.find((b) => b.name === sp.builder);
      if (gone) gone.slots = Math.max(gone.slots, sp.slot + 1);
      else builders.push({ name: sp.builder, slots: sp.slot + 1 });
    }
  }
  return {
    records,
    startedAtMs: run.t0,
    wallMs: run.now(),
    builders,
    stats: {
      // The client evaluated; the connections were warm.
      evalMs: 0,
      connectMs: 0,
      // The fleet's transfers while the build ran (other builds' included).
      pathsUploaded: transfers.up,
      pathsDownloaded: transfers.down,
      bytesUploaded: transfers.bytesUp,
      bytesDownloaded: transfers.bytesDown,
      derivationsInClosure: run.graph.nodes.size,
      // The coordinator's process: every build it ran so far.
      cpuMs: Math.round((usage.userCPUTime + usage.systemCPUTime) / 1000),
      maxRssMb: Math.round(usage.maxRSS / 1024),
    },
  };
}

/** A derivation's last build log, if the build knows it (`known`; undefined: ask the history). */
export async function storedLog(
  stateDir: string,
  drv: string,
  known: boolean | undefined,
  history: HistoryStore,
  id: BuildId,
): Promise<string | undefined> {
  const has = known ?? (await history.build(id))?.derivations.some((d) => d.drv === drv);
  if (!has) return undefined;
  try {
    return await readFile(statePaths(stateDir).logs.derivationLog(drv), "utf8");
  } catch {
    return undefined;
  }
}

/** A build's timeline: a running build's records now (`live`), else the stored ones. */
export async function timelineOf(
  id: BuildId,
  live:
    { label: string; now: Pick<StoredRecords, "records" | "wallMs" | "builders"> | undefined } | undefined,
  history: HistoryStore,
): Promise<string | undefined> {
  const label = live ? live.label : (await history.build(id))?.label;
  const stored = live ? live.now : await history.records(id);
  if (!stored || label === undefined) return undefined;
  return renderTimelineSvg(stored.records, {
    title: label,
    wallMs: stored.wallMs,
    builders: stored.builders,
  });
}
