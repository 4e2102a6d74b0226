import { ExitCode, NixpoolError } from "../errors.js";
import { classifySshFailure, type SshFailure } from "../ssh-errors.js";

/** Why a serve session ended. */
export interface ServeCloseReason {
  kind: "closed" | "killed" | "aborted" | "eof" | "protocol-error" | "timeout" | "not-started";
  /** One clause for people: "its process exited with 255". */
  message: string;
  exitCode: number | undefined;
  signal: string | undefined;
  /** The peer's last stderr lines (ssh's own complaints land here too). */
  stderrTail: string[];
  /** What ssh's stderr says went wrong, when the command is ssh. */
  sshFailure: SshFailure | undefined;
}

/** What nixpool itself did to end a session, if anything. */
export interface ServeCloseIntent {
  kind: "closed" | "killed" | "aborted" | "protocol-error" | "timeout";
  message: string;
}

/** How the peer's process ended. */
export interface ServeProcessExit {
  exitCode: number | undefined;
  signal: string | undefined;
  failedToStart: string | undefined;
}

/** Explains the end of a session from what nixpool did, how the process ended, and its stderr. */
export function describeClose(
  program: string,
  intent: ServeCloseIntent | undefined,
  exit: ServeProcessExit,
  stderrTail: string[],
): ServeCloseReason {
  const ssh = /(^|\/)ssh$/.test(program) ? classifySshFailure(stderrTail.join("\n")) : undefined;
  const base = {
    exitCode: exit.exitCode,
    signal: exit.signal,
    stderrTail,
    sshFailure: ssh === "unknown" ? undefined : ssh,
  };
  if (intent) return { kind: intent.kind, message: intent.message, ...base };
  if (exit.failedToStart) {
    return {
      kind: "not-started",
      message: `${program} could not be started (${exit.failedToStart})`,
      ...base,
    };
  }
  const message =
    exit.signal !== undefined
      ? `its process was killed by ${exit.signal}`
      : exit.exitCode !== undefined
        ? `its process exited with ${exit.exitCode}`
        : "it closed its output";
  return { kind: "eof", message, ...base };
}

/** The error of a request that cannot complete because the session ended (or is ending). */
export function connectionLostError(
  peer: string,
  what: string,
  reason: ServeCloseReason | undefined,
  intent: ServeCloseIntent | undefined,
  command: string,
): NixpoolError {
  if ((reason?.kind ?? intent?.kind) === "aborted") {
    return new NixpoolError("INTERRUPTED", `The connection to ${peer} was interrupted during ${what}.`, {
      exitCode: ExitCode.interrupted,
    });
  }
  const why = reason?.message ?? intent?.message ?? "the connection is closing";
  const tail = reason?.stderrTail.filter((l) => l.trim() !== "").slice(-3) ?? [];
  return new NixpoolError(
    "SERVE_CONNECTION_LOST",
    `The connection to ${peer} was lost during ${what}: ${why}${tail.length ? ` (${tail.join(" / ")})` : ""}.`,
    {
      hint: "Check the builder with `nixpool doctor NAME`; nixpool retries its work elsewhere where it can.",
      details: {
        command,
        exitCode: reason?.exitCode,
        signal: reason?.signal,
        stderr: reason?.stderrTail.slice(-10),
        ...(reason?.sshFailure ? { sshFailure: reason.sshFailure } : {}),
      },
    },
  );
}

/** The error of a request the peer did not answer in time. */
export function requestTimeoutError(peer: string, what: string, ms: number): NixpoolError {
  return new NixpoolError(
    "SERVE_TIMEOUT",
    `${peer.charAt(0).toUpperCase()}${peer.slice(1)} did not answer ${what} within ${ms} ms.`,
    {
      hint: "Check the builder with `nixpool doctor NAME`; the connection was closed.",
      details: { what, timeoutMs: ms },
    },
  );
}
