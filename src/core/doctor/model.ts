import { ExitCode } from "../errors.js";

/** A check's verdict: pass, warn (works but worth fixing), fail (builds will fail), skip (not run). */
export type CheckStatus = "pass" | "warn" | "fail" | "skip";

/** One row of the doctor's report. */
export interface CheckResult {
  /** Stable identifier, e.g. "host-key" or "local.trusted-user"; documented in docs/doctor.md. */
  id: string;
  /** Short human label. */
  title: string;
  status: CheckStatus;
  /** What was found, or the cause, in one sentence. */
  message: string;
  /** The exact fix: a command to run or a config line to write. */
  fix?: string;
  /** What Nix prints when this check fails, for searching the troubleshooting page. */
  symptom?: string;
  durationMs?: number;
  /** Structured findings (never secrets). */
  data?: Record<string, unknown>;
}

/** Every check of one builder. */
export interface BuilderReport {
  name: string;
  uri: string;
  address: string;
  status: CheckStatus;
  durationMs: number;
  checks: CheckResult[];
}

/** The whole diagnosis; its JSON form is documented in docs/doctor.md. */
export interface DoctorReport {
  status: CheckStatus;
  exitCode: number;
  durationMs: number;
  local: CheckResult[];
  builders: BuilderReport[];
  summary: Record<CheckStatus, number>;
}

type Extra = Partial<Pick<CheckResult, "fix" | "symptom" | "data" | "durationMs">>;

function make(status: CheckStatus, id: string, title: string, message: string, extra: Extra): CheckResult {
  const r: CheckResult = { id, title, status, message };
  if (extra.fix !== undefined) r.fix = extra.fix;
  if (extra.symptom !== undefined) r.symptom = extra.symptom;
  if (extra.data !== undefined) r.data = extra.data;
  if (extra.durationMs !== undefined) r.durationMs = extra.durationMs;
  return r;
}

/** A passing check. */
export function passCheck(id: string, title: string, message: string, extra: Extra = {}): CheckResult {
  return make("pass", id, title, message, extra);
}

/** A warning: builds work but something is worth fixing. */
export function warnCheck(id: string, title: string, message: string, extra: Extra = {}): CheckResult {
  return make("warn", id, title, message, extra);
}

/** A failure: builds on this path will fail. */
export function failCheck(id: string, title: string, message: string, extra: Extra = {}): CheckResult {
  return make("fail", id, title, message, extra);
}

/** A check that could not run because an earlier one failed. */
export function skipCheck(id: string, title: string, because: string): CheckResult {
  return make("skip", id, title, `Not checked: ${because}.`, {});
}

const RANK: Record<CheckStatus, number> = { skip: 0, pass: 1, warn: 2, fail: 3 };

/** The worst status of a list (skip ranks below pass: it is "skip" only when everything was skipped). */
function worstStatus(statuses: readonly CheckStatus[]): CheckStatus {
  let worst: CheckStatus = "skip";
  for (const s of statuses) if (RANK[s] > RANK[worst]) worst = s;
  return worst;
}

/** Exit code: 1 when a local check fails, 3 when some builder fails, else 0 (warnings are fine). */
export function computeExitCode(local: readonly CheckResult[], builders: readonly BuilderReport[]): number {
  if (local.some((c) => c.status === "fail")) return ExitCode.failed;
  if (builders.some((b) => b.status === "fail")) return ExitCode.partial;
  return ExitCode.ok;
}

/** Assembles the report of one builder from its checks. */
export function assembleBuilderReport(
  b: { name: string; uri: string; address: string },
  checks: CheckResult[],
  durationMs: number,
): BuilderReport {
  return { ...b, status: worstStatus(checks.map((c) => c.status)), durationMs, checks };
}

/** Assembles the whole report: statuses, counts and exit code. */
export function assembleReport(
  local: CheckResult[],
  builders: BuilderReport[],
  durationMs: number,
): DoctorReport {
  const all = [...local, ...builders.flatMap((b) => b.checks)];
  const summary: Record<CheckStatus, number> = { pass: 0, warn: 0, fail: 0, skip: 0 };
  for (const c of all) summary[c.status] += 1;
  return {
    status: worstStatus(all.map((c) => c.status)),
    exitCode: computeExitCode(local, builders),
    durationMs,
    local,
    builders,
    summary,
  };
}
