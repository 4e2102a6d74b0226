import { configError } from "./errors.js";

export interface NumberFlagOptions {
  /** Inclusive bounds. */
  min?: number;
  max?: number;
  integer?: boolean;
  /** Greater than zero. */
  positive?: boolean;
  /** A full example command for the hint, e.g. "nixpool local up --builders 2". */
  example: string;
}

/** Parses a numeric command-line flag, or fails with FLAG_INVALID naming the flag, its bounds and an example. */
export function parseNumberFlag(flag: string, value: string, o: NumberFlagOptions): number {
  const n = Number(value);
  const ok =
    value.trim() !== "" &&
    Number.isFinite(n) &&
    (!o.integer || Number.isSafeInteger(n)) &&
    (!o.positive || n > 0) &&
    (o.min === undefined || n >= o.min) &&
    (o.max === undefined || n <= o.max);
  if (!ok) {
    const kind = `a ${o.positive ? "positive " : ""}${o.integer ? "whole number" : "number"}`;
    const range =
      o.min !== undefined && o.max !== undefined
        ? ` from ${o.min} to ${o.max}`
        : o.min !== undefined
          ? ` ≥ ${o.min}`
          : o.max !== undefined
            ? ` ≤ ${o.max}`
            : "";
    throw configError("FLAG_INVALID", `${flag} must be ${kind}${range}, not "${value}".`, {
      hint: `For example: ${o.example}`,
    });
  }
  return n;
}
