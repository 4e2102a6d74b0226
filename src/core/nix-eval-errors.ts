// Evaluation failures told apart from build failures, from the stderr of any Nix command that
// evaluates (nix-build, nix-instantiate), in plain text or `--log-format internal-json`.
import { ExitCode, NixpoolError } from "./errors.js";

/** Where Nix says an evaluation error is: a file (or «string» for --arg) and its line and column. */
export interface NixPosition {
  file: string;
  line: number;
  column: number;
}

const ANSI = new RegExp(String.fromCharCode(27) + "\\[[0-9;]*m", "g");

/**
 * Nix's messages in order, without colours: one per `@nix` msg line, or, in plain text, one per
 * line starting with `error:`/`warning:` together with the indented lines that follow it.
 */
export function splitNixMessages(stderr: string): string[] {
  const messages: string[] = [];
  let current: string[] | undefined;
  const flush = () => {
    if (current) messages.push(current.join("\n").trimEnd());
    current = undefined;
  };
  for (const raw of stderr.split("\n")) {
    if (raw.startsWith("@nix ")) {
      flush();
      let ev: unknown;
      try {
        ev = JSON.parse(raw.slice(5));
      } catch {
        continue;
      }
      const e = ev as { action?: unknown; msg?: unknown };
      if (e.action === "msg" && typeof e.msg === "string") messages.push(e.msg.replace(ANSI, "").trimEnd());
      continue;
    }
    const line = raw.replace(ANSI, "");
    if (/^(error|warning):/.test(line) || line.startsWith("(use '--show-trace'")) {
      flush();
      current = [line];
    } else if (current && (line === "" || /^\s/.test(line))) current.push(line);
    else flush();
  }
  flush();
  return messages;
}

/** The position of the first `at FILE:LINE:COLUMN:` line of an error message. */
export function findNixPosition(message: string): NixPosition | undefined {
  const m = /^\s*at (.+):(\d+):(\d+):?$/m.exec(message);
  return m?.[1] ? { file: m[1], line: Number(m[2]), column: Number(m[3]) } : undefined;
}

/** Errors only evaluation produces (no position is printed for some of them). */
const EVAL_SIGNATURES = [
  /^error: syntax error/,
  /^error: undefined variable/,
  /^error: attribute '.*' (in selection path '.*' )?(not found|missing)/,
  /^error: evaluation aborted with the following error message/,
  /^error: cannot evaluate a function that has an argument without a value/,
  /^error: (function '.*' )?called (without required|with unexpected) argument/,
  /^error: infinite recursion encountered/,
  /^error: assertion '.*' failed/,
  /^error: cannot coerce/,
  /^error: value is .* while a .* was expected/,
  /^error: (getting status of|opening file) '.*': No such file or directory/,
];

/** Errors of the build that follows evaluation: never an evaluation failure. */
const BUILD_SIGNATURES =
  /builder for '.*' failed|build of '.*' failed|Failed to find a machine|unable to start any build|cannot build on|dependencies couldn't be built|unexpected end-of-file|cannot connect to|failed to start SSH/;

/**
 * The evaluation failure in a Nix command's stderr, or undefined when it failed otherwise (a
 * build, a builder, a signal). `file` is the absolute path of the Nix file given to Nix: when Nix
 * says that very file (or its default.nix) does not exist, the code is NIX_FILE_NOT_FOUND (exit
 * 2); any other evaluation error is NIX_EVAL_FAILED (exit 1). Nix's `warning:` lines are never
 * the reason; Nix's own error text (with its file:line:column) is in details.nixError.
 */
export function evalFailure(stderr: string, file: string): NixpoolError | undefined {
  const messages = splitNixMessages(stderr);
  const errors = messages.filter((m) => m.startsWith("error:"));
  const first = errors[0];
  if (first === undefined || errors.some((e) => BUILD_SIGNATURES.test(e))) return undefined;
  const position = errors.map(findNixPosition).find((p) => p !== undefined);
  const traceHint = messages.some((m) => m.startsWith("(use '--show-trace'"));
  if (!position && !traceHint && !EVAL_SIGNATURES.some((re) => re.test(first))) return undefined;
  const nixError = messages.filter((m) => !m.startsWith("warning:")).join("\n");
  const reason = (first.slice("error:".length).trim().split("\n")[0] ?? "").replace(/\.$/, "");
  const details = { file, position: position ?? null, nixError };

  const missing = /^error: (?:getting status of|opening file) '(.+)': No such file or directory/.exec(
    first,
  )?.[1];
  const top = file.replace(/\/+$/, "");
  if (missing !== undefined && (missing === top || missing === `${top}/default.nix`)) {
    return new NixpoolError("NIX_FILE_NOT_FOUND", `The Nix file ${missing} does not exist.`, {
      hint: "Give the path of an existing Nix file, e.g.: nixpool build examples/graph.nix",
      exitCode: ExitCode.usage,
      details,
    });
  }
  const at = position ? ` (at ${position.file}:${position.line}:${position.column})` : "";
  return new NixpoolError("NIX_EVAL_FAILED", `Nix could not evaluate ${file}: ${reason}${at}.`, {
    hint: position
      ? `Fix the expression at ${position.file}:${position.line}:${position.column}, then check it with: nix-instantiate --show-trace ${file}`
      : `Check it with: nix-instantiate --show-trace ${file}`,
    details,
  });
}
