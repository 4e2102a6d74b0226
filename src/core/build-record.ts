import type { Trust } from "./builder.js";

/**
 * What the dispatcher records about each derivation of a build, as plain data: the live status
 * block, the report table, `--json` and the `--timeline` chart are all drawn from these records.
 */

export type Phase = "queued" | "upload" | "build" | "download";

/**
 * One phase of one attempt, in ms since the build started. `slot` counts from 1, as shown
 * ("local1 #1").
 */
export interface PhaseSpan {
  phase: Exclude<Phase, "queued">;
  builder: string;
  slot: number;
  startMs: number;
  endMs: number;
}

export type DerivationStatus = "queued" | "running" | "built" | "cached" | "failed" | "skipped";

/** One derivation of a dispatched build. cached = its outputs were already valid on a builder or locally. */
export interface DerivationRecord {
  drv: string;
  name: string;
  status: DerivationStatus;
  builder: string | null;
  slot: number | null;
  attempts: number;
  /** Why earlier attempts ended, e.g. "builder local2 lost the connection". */
  retries: { builder: string; reason: string }[];
  readyMs: number | null;
  startedMs: number | null;
  finishedMs: number | null;
  spans: PhaseSpan[];
  error: string | null;
  /** The trust of the builder that built it (set once a builder takes it). */
  trust?: Trust;
  /** Each successful build and the NAR hash of every output, when several builders built it (--verify). */
  builds?: BuildCheck[];
  /** Built on several builders (--verify, or a trusted check of an untrusted build) with equal NAR hashes. */
  verified?: boolean;
}

/** One successful build of a derivation: where, and the NAR hash of each output (`sha256:…`). */
export interface BuildCheck {
  builder: string;
  trust: Trust;
  narHashes: Record<string, string>;
}

export interface BuilderSlots {
  name: string;
  slots: number;
  state: "connecting" | "up" | "down";
  running: { slot: number; name: string }[];
}

export interface StatusSnapshot {
  elapsedMs: number;
  total: number;
  done: number;
  running: number;
  queued: number;
  failed: number;
  builders: BuilderSlots[];
}

/** Time a derivation spent in each phase, summed over its attempts. */
export interface PhaseTotals {
  queuedMs: number;
  uploadMs: number;
  buildMs: number;
  downloadMs: number;
}

const PHASE_ORDER = { upload: 0, build: 1, download: 2 } as const;

/**
 * The spans of a record grouped by attempt, in time order. A new attempt starts where the
 * builder or slot changes, or where the phases go back (a build after a download, a second
 * upload): an attempt runs upload → build → download at most once each, on one slot.
 */
export function splitAttempts(record: DerivationRecord): PhaseSpan[][] {
  const spans = [...record.spans].sort((a, b) => a.startMs - b.startMs || a.endMs - b.endMs);
  const attempts: PhaseSpan[][] = [];
  let current: PhaseSpan[] = [];
  for (const span of spans) {
    const last = current[current.length - 1];
    if (
      last &&
      (span.builder !== last.builder ||
        span.slot !== last.slot ||
        PHASE_ORDER[span.phase] <= PHASE_ORDER[last.phase])
    ) {
      attempts.push(current);
      current = [];
    }
    current.push(span);
  }
  if (current.length > 0) attempts.push(current);
  return attempts;
}

/**
 * Time spent queued, uploading, building and downloading. Queued is the wait for a slot: from
 * `readyMs` to the first span, plus, after each failed attempt, from its end to the next
 * attempt's start (the derivation was queued again).
 */
export function phaseTotals(record: DerivationRecord): PhaseTotals {
  const totals: PhaseTotals = { queuedMs: 0, uploadMs: 0, buildMs: 0, downloadMs: 0 };
  for (const s of record.spans) {
    const ms = Math.max(0, s.endMs - s.startMs);
    if (s.phase === "upload") totals.uploadMs += ms;
    else if (s.phase === "build") totals.buildMs += ms;
    else totals.downloadMs += ms;
  }
  const attempts = splitAttempts(record);
  let waitingSince = record.readyMs;
  for (const attempt of attempts) {
    const first = attempt[0];
    const last = attempt[attempt.length - 1];
    if (!first || !last) continue;
    if (waitingSince !== null) totals.queuedMs += Math.max(0, first.startMs - waitingSince);
    waitingSince = Math.max(...attempt.map((s) => s.endMs));
  }
  // Never started (skipped after a failure, or still queued when the build stopped).
  if (attempts.length === 0 && record.readyMs !== null && record.finishedMs !== null) {
    totals.queuedMs = Math.max(0, record.finishedMs - record.readyMs);
  }
  return totals;
}

/** One derivation as `nixpool build --json` prints it. */
export interface JsonDerivationRecord extends PhaseTotals {
  drv: string;
  name: string;
  status: DerivationStatus;
  builder: string | null;
  attempts: number;
  retries: { builder: string; reason: string }[];
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
  /** The trust of the builder that built it; null when nothing built it in this build. */
  trust: Trust | null;
  verified: boolean;
  builds: BuildCheck[];
  spans: PhaseSpan[];
}

/**
 * The `--json` form of a record: ISO 8601 `startedAt`/`finishedAt` (the build started at
 * `startedAtEpochMs`) and the phase totals; spans stay in ms since the build started.
 */
export function toJsonRecord(record: DerivationRecord, startedAtEpochMs: number): JsonDerivationRecord {
  const iso = (ms: number | null) => (ms === null ? null : new Date(startedAtEpochMs + ms).toISOString());
  return {
    drv: record.drv,
    name: record.name,
    status: record.status,
    builder: record.builder,
    attempts: record.attempts,
    retries: record.retries.map((r) => ({ ...r })),
    startedAt: iso(record.startedMs),
    finishedAt: iso(record.finishedMs),
    ...phaseTotals(record),
    error: record.error,
    trust: record.trust ?? null,
    verified: record.verified ?? false,
    builds: (record.builds ?? []).map((b) => ({ ...b, narHashes: { ...b.narHashes } })),
    spans: record.spans.map((s) => ({ ...s })),
  };
}

/**
 * A live snapshot from the records and the builders' states: done counts built and cached
 * derivations; each builder lists the derivations running on it, by slot.
 */
export function summarizeRecords(
  records: readonly DerivationRecord[],
  builders: readonly { name: string; slots: number; state: BuilderSlots["state"] }[],
  elapsedMs: number,
): StatusSnapshot {
  const count = (...statuses: DerivationStatus[]) =>
    records.filter((r) => statuses.includes(r.status)).length;
  return {
    elapsedMs,
    total: records.length,
    done: count("built", "cached"),
    running: count("running"),
    queued: count("queued"),
    failed: count("failed"),
    builders: builders.map((b) => ({
      name: b.name,
      slots: b.slots,
      state: b.state,
      running: records
        .filter((r) => r.status === "running" && r.builder === b.name && r.slot !== null)
        .map((r) => ({ slot: r.slot ?? 0, name: r.name }))
        .sort((x, y) => x.slot - y.slot),
    })),
  };
}
