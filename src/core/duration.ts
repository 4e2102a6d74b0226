import { configError } from "./errors.js";

/**
 * Durations, one parser for every flag, variable and setting that takes one
 * (docs/configuration.md#durations): one or more NUMBER UNIT terms, units ms, s, m, h, d, w,
 * such as 500ms, 90s, 5m, 1h30m, 2d, 2w. A bare number means seconds, except for the flags
 * that always read it otherwise (BareNumber below).
 */

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const TERM = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g;
const BARE = /^\d+(?:\.\d+)?$/;

/** Parses "500ms", "90s", "5m", "1h30m", "2d", "2w" into milliseconds; a unit is required. Undefined when invalid. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (t === "" || t.length > 40) return undefined;
  const terms = [...t.matchAll(TERM)];
  if (terms.length === 0 || terms.map((m) => m[0]).join("") !== t) return undefined;
  const units = terms.map((m) => m[2]);
  if (new Set(units).size !== units.length) return undefined;
  const ms = terms.reduce((sum, m) => sum + Number(m[1]) * (UNIT_MS[m[2] ?? ""] ?? NaN), 0);
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

/**
 * What a bare number (no unit) means for a flag: seconds (the convention), a legacy unit that
 * still works but is announced on stderr, or refused (where a unit-less guess could do harm).
 */
export type BareNumber = "seconds" | "refuse" | { legacyUnit: "ms" | "m" };

export interface DurationFlag {
  /** The flag or variable, e.g. "--ttl" or "NIXPOOL_HCLOUD_TTL". */
  flag: string;
  bare: BareNumber;
  /** Inclusive bounds in ms. */
  minMs?: number;
  maxMs?: number;
  /** A full example for the hint, e.g. "nixpool worker up --ttl 2h". */
  example: string;
}

/** A duration read from a flag, with the deprecation note to print on stderr, if any. */
export interface FlagDuration {
  ms: number;
  warning?: string;
}

/** A duration as the shortest exact text: 30s, 5m, 1h, 1500ms. */
export function formatMs(ms: number): string {
  for (const [unit, size] of [
    ["w", 604_800_000],
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** Reads a duration flag by the one convention; fails with DURATION_INVALID naming the flag and an example. */
export function readDurationFlag(text: string, spec: DurationFlag): FlagDuration {
  const t = text.trim();
  const bad = (why: string) =>
    configError("DURATION_INVALID", `${spec.flag} "${text}" ${why}.`, {
      hint: `Write a duration such as 90s, 5m, 1h30m, 2d or 2w, e.g. ${spec.example}`,
    });
  let ms: number | undefined;
  let warning: string | undefined;
  if (BARE.test(t)) {
    if (spec.bare === "refuse") throw bad("has no unit");
    if (spec.bare === "seconds") ms = Math.round(Number(t) * 1000);
    else {
      const unit = spec.bare.legacyUnit;
      ms = Math.round(Number(t) * (UNIT_MS[unit] ?? 1));
      warning = `warning: ${spec.flag} ${t} is read as ${t}${unit} (${unit === "m" ? "minutes" : "milliseconds"}), as before; a bare number will mean seconds in a later release: write ${formatMs(ms)}.`;
    }
  } else {
    ms = parseDuration(t);
    if (ms === undefined) throw bad("is not a duration");
  }
  if (spec.minMs !== undefined && ms < spec.minMs) throw bad(`is shorter than ${formatMs(spec.minMs)}`);
  if (spec.maxMs !== undefined && ms > spec.maxMs) throw bad(`is longer than ${formatMs(spec.maxMs)}`);
  return warning === undefined ? { ms } : { ms, warning };
}

/** Human-readable seconds (CLI reports, the dashboard): 0.42s, 12.3s, 2m05s. */
export function formatSeconds(ms: number): string {
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(2)}s`;
  if (s < 120) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
}
