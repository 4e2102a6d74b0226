import { execa, type Options as ExecaOptions, type ResultPromise } from "execa";
import { constants as osConstants } from "node:os";
import { ExitCode, NixpoolError } from "../core/errors.js";
import { redact } from "../core/redact.js";

export interface RunOptions {
  /** Milliseconds; default 120 s. 0 means none. */
  timeout?: number;
  signal?: AbortSignal;
  env?: Record<string, string | undefined>;
  /** Replace the environment instead of extending process.env. */
  extendEnv?: boolean;
  input?: string;
  cwd?: string;
  /** Do not throw on a non-zero exit; return the result instead. */
  reject?: boolean;
  /** Called with each stderr line as it arrives. */
  onStderrLine?: (line: string) => void;
  /** Called with each stdout line as it arrives. */
  onStdoutLine?: (line: string) => void;
}

export interface RunResult {
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  durationMs: number;
}

function tail(text: string, lines = 20): string {
  return text.split("\n").slice(-lines).join("\n").trim();
}

/**
 * Runs argv (never a shell string) and classifies failures: could not start
 * (PROCESS_NOT_STARTED), timed out (PROCESS_TIMEOUT) or non-zero exit (PROCESS_FAILED),
 * each carrying the escaped command and the stderr tail.
 */
export async function run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error("run() needs a command");
  const started = Date.now();
  const execaOptions: ExecaOptions = {
    timeout: options.timeout ?? 120_000,
    reject: false,
    stripFinalNewline: false,
    extendEnv: options.extendEnv ?? true,
    ...(options.signal ? { cancelSignal: options.signal } : {}),
    ...(options.env ? { env: options.env } : {}),
    ...(options.input !== undefined ? { input: options.input } : { stdin: "ignore" }),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  };
  const child: ResultPromise<ExecaOptions> = execa(file, args, execaOptions);
  attachLineReaders(child, options);
  const result = await child;
  const stdout = typeof result.stdout === "string" ? result.stdout : "";
  const stderr = typeof result.stderr === "string" ? result.stderr : "";
  const out: RunResult = {
    command: result.escapedCommand,
    exitCode: result.exitCode ?? -1,
    stdout,
    stderr,
    timedOut: result.timedOut,
    durationMs: Date.now() - started,
  };
  if (result.failed && result.exitCode === undefined && !result.timedOut && !result.isCanceled) {
    throw new NixpoolError("PROCESS_NOT_STARTED", `Could not start ${file}: ${result.shortMessage}.`, {
      hint: `Install ${file} (on Debian: apt-get install the package that provides it) or check PATH.`,
      details: { command: redact(result.escapedCommand) },
    });
  }
  if (result.isCanceled) {
    throw new NixpoolError("INTERRUPTED", `${file} was interrupted.`, { exitCode: ExitCode.interrupted });
  }
  if (result.timedOut) {
    throw new NixpoolError("PROCESS_TIMEOUT", `${file} did not finish within ${execaOptions.timeout} ms.`, {
      details: { command: redact(result.escapedCommand), stderr: redact(tail(stderr)) },
    });
  }
  if (out.exitCode !== 0 && options.reject !== false) {
    throw new NixpoolError(
      "PROCESS_FAILED",
      `${redact(result.escapedCommand)} exited with ${out.exitCode}${stderr.trim() ? `: ${redact(tail(stderr, 5))}` : "."}`,
      {
        details: {
          command: redact(result.escapedCommand),
          exitCode: out.exitCode,
          stderr: redact(tail(stderr)),
        },
      },
    );
  }
  return out;
}

function attachLineReaders(child: ResultPromise<ExecaOptions>, options: RunOptions): void {
  const hook = (stream: NodeJS.ReadableStream | null, cb?: (line: string) => void) => {
    if (!stream || !cb) return;
    let buf = "";
    stream.on("data", (chunk: Buffer | string) => {
      buf += chunk.toString();
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        cb(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    stream.on("end", () => {
      if (buf) cb(buf);
    });
  };
  hook(child.stdout, options.onStdoutLine);
  hook(child.stderr, options.onStderrLine);
}

/**
 * Starts a long-running process detached from nixpool (a builder host's sshd, say) and
 * returns its PID; its output goes nowhere (the process logs to its own file).
 */
export function spawnDetached(
  argv: readonly string[],
  options: { env?: Record<string, string> } = {},
): number {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error("spawnDetached() needs a command");
  const child = execa(file, args, {
    detached: true,
    stdio: "ignore",
    reject: false,
    cleanup: false,
    ...(options.env ? { env: options.env } : {}),
  });
  child.catch(() => undefined);
  child.unref();
  if (child.pid === undefined) {
    throw new NixpoolError("PROCESS_NOT_STARTED", `Could not start ${file}.`, {
      hint: `Check that ${file} is installed.`,
    });
  }
  return child.pid;
}

/**
 * Runs argv attached to this terminal (stdin, stdout and stderr inherited), for interactive
 * shells; returns its exit code (128+N when killed by signal N).
 */
export async function runInteractive(
  argv: readonly string[],
  options: { env?: Record<string, string | undefined>; signal?: AbortSignal; cwd?: string } = {},
): Promise<number> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error("runInteractive() needs a command");
  const result = await execa(file, args, {
    stdio: "inherit",
    reject: false,
    ...(options.env ? { env: options.env } : {}),
    ...(options.signal ? { cancelSignal: options.signal } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  if (result.failed && result.exitCode === undefined && !result.isCanceled && !result.signal) {
    throw new NixpoolError("PROCESS_NOT_STARTED", `Could not start ${file}: ${result.shortMessage}.`, {
      hint: `Install ${file} or check PATH.`,
    });
  }
  if (result.exitCode !== undefined) return result.exitCode;
  return 128 + (result.signal ? (osConstants.signals[result.signal] ?? 0) : 0);
}
