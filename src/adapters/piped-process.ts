import { spawn } from "node:child_process";
import { redact } from "../core/redact.js";
import { quoteShellWord } from "../core/shell-word.js";

/**
 * Long-lived processes whose pipes the caller drives (protocol peers such as `nix-store --serve`).
 * Built on node:child_process rather than execa: the gateway opens one per client session, and
 * loading execa was most of the time before a session answered its first request.
 */

/** A process whose pipes the caller drives (a protocol session); see spawnPiped. */
export interface PipedProcess {
  stdin: NodeJS.WritableStream & { destroyed: boolean; end(): void };
  stdout: NodeJS.ReadableStream;
  stderr: NodeJS.ReadableStream;
  pid: number | undefined;
  /** The escaped command, for messages. */
  command: string;
  /** Settles when the process has exited (never rejects). */
  exited: Promise<{
    exitCode: number | undefined;
    signal: string | undefined;
    failedToStart: string | undefined;
  }>;
  kill(signal?: NodeJS.Signals): void;
}

/** Children still running: killed when nixpool exits, so none outlives it. */
const live = new Set<{ kill: () => void }>();
let exitHook = false;
function killOnExit(child: { kill: () => void }): void {
  live.add(child);
  if (exitHook) return;
  exitHook = true;
  process.once("exit", () => {
    for (const c of live) c.kill();
  });
}

/** The command as a shell would read it (for messages only), secrets redacted. */
function escapeCommand(argv: readonly string[]): string {
  return redact(argv.map(quoteShellWord).join(" "));
}

/**
 * Starts argv (never a shell string) with its three pipes left to the caller: no timeout (the
 * caller owns liveness), SIGTERM then SIGKILL a second later when `signal` aborts, killed when
 * nixpool exits. `env` extends this process's environment.
 */
export function spawnPiped(
  argv: readonly string[],
  options: { env?: Record<string, string | undefined>; signal?: AbortSignal } = {},
): PipedProcess {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error("spawnPiped() needs a command");
  const child = spawn(file, args, {
    stdio: ["pipe", "pipe", "pipe"],
    ...(options.env ? { env: { ...process.env, ...options.env } } : {}),
  });
  // A peer that exits while we write makes stdin fail with EPIPE: its end is reported by
  // `exited`, and the caller sees the closed pipes; the error itself must not end nixpool.
  for (const stream of [child.stdin, child.stdout, child.stderr]) stream.on("error", () => undefined);
  let done = false;
  const entry = { kill: () => void (done || child.kill("SIGKILL")) };
  killOnExit(entry);
  const exited = new Promise<{
    exitCode: number | undefined;
    signal: string | undefined;
    failedToStart: string | undefined;
  }>((settle) => {
    child.once("error", (e) => {
      // Only a failure to start ends it here; once running, "close" reports the end.
      if (child.pid !== undefined) return;
      done = true;
      live.delete(entry);
      settle({ exitCode: undefined, signal: undefined, failedToStart: `${file}: ${e.message}` });
    });
    child.once("close", (code, sig) => {
      done = true;
      live.delete(entry);
      settle({ exitCode: code ?? undefined, signal: sig ?? undefined, failedToStart: undefined });
    });
  });
  if (options.signal) {
    const onAbort = () => {
      if (done) return;
      child.kill("SIGTERM");
      setTimeout(() => void (done || child.kill("SIGKILL")), 1000).unref();
    };
    if (options.signal.aborted) onAbort();
    else options.signal.addEventListener("abort", onAbort, { once: true });
    void exited.then(() => options.signal?.removeEventListener("abort", onAbort));
  }
  return {
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    pid: child.pid,
    command: escapeCommand(argv),
    exited,
    kill: (signal: NodeJS.Signals = "SIGTERM") => {
      if (!done) child.kill(signal);
    },
  };
}
