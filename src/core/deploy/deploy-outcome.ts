import { ExitCode, NixpoolError } from "../errors.js";

/** How one target's deploy ended. */
export type TargetStatus =
  /** Activated and confirmed over a fresh connection. */
  | "activated"
  /** The activation failed; the previous generation was restored and activated again. */
  | "rolled-back"
  /** No fresh connection within --confirm-timeout: the target's watchdog rolls it back. */
  | "unconfirmed"
  /** `--install`: nixos-install put the system under the target's root; it takes over at the next boot. */
  | "installed"
  /** Failed before anything on the target changed (connection, copy, missing program), or restoring failed. */
  | "failed";

export interface TargetOutcome {
  target: string;
  status: TargetStatus;
  /** The generation the profile is at now (as far as nixpool knows). */
  generation: number | undefined;
  /** The system deployed (or attempted). */
  path: string | undefined;
  ms: number;
  /** Paths copied to the target. */
  copied?: number;
  /** How they travelled: builder → target directly, or through this machine. */
  route?: "direct" | "via-here";
  error?: { code: string; message: string; hint: string | undefined; exitCode: number };
  /** What to do next (`--install`: reboot into the installed system). */
  next?: string;
}

/** The statuses that are a success: the system is active, or installed to take over at the next boot. */
export function succeeded(o: Pick<TargetOutcome, "status">): boolean {
  return o.status === "activated" || o.status === "installed";
}

/** An outcome's error as --json and the table show it. */
export function outcomeError(e: NixpoolError): NonNullable<TargetOutcome["error"]> {
  return { code: e.code, message: e.message, hint: e.hint, exitCode: e.exitCode };
}

/**
 * The exit status of a deploy: 0 when every target activated (or, with --install, installed), 3 when some did and others not
 * (partial failure), else the failing target's own status (1, or 2 for a usage error).
 */
export function deployExitCode(outcomes: readonly TargetOutcome[]): number {
  const failed = outcomes.filter((o) => !succeeded(o));
  if (failed.length === 0) return ExitCode.ok;
  if (failed.length < outcomes.length) return ExitCode.partial;
  const codes = new Set(failed.map((o) => o.error?.exitCode ?? ExitCode.failed));
  return codes.size === 1 ? ([...codes][0] ?? ExitCode.failed) : ExitCode.failed;
}

/** The summary table's rows: TARGET, RESULT, GENERATION, TIME, DETAIL. */
export function summaryRows(
  outcomes: readonly TargetOutcome[],
  formatMs: (ms: number) => string,
): string[][] {
  return outcomes.map((o) => [
    o.target,
    o.status,
    o.generation === undefined ? "-" : String(o.generation),
    formatMs(o.ms),
    o.error ? `${o.error.code}: ${o.error.message}` : (o.path ?? ""),
  ]);
}
