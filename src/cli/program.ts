import { readFileSync } from "node:fs";
import { Command, CommanderError, Help } from "commander";
import { ExitCode, isNixpoolError } from "../core/errors.js";
import { redact, redactForTerminal } from "../core/redact.js";
import type { BuilderSourceReader, Context, GlobalFlags } from "./context.js";
import { COMMANDS, commandNameOf } from "./commands.js";
import { joinNixArgPairs } from "./nix-args.js";

/** nixpool's version, from its package.json (dist/cli/ and src/cli/ are both two levels down). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

/** Builders beyond the inventory: the local pool and rented workers, read from the state directory. */
const BUILDER_SOURCES: readonly BuilderSourceReader[] = [
  async (stateDir) => (await import("../providers/local/records.js")).readPoolBuilders(stateDir),
  async (stateDir) => (await import("../providers/hetzner/records.js")).readWorkerBuilders(stateDir),
];

const HELP_FOOTER = `
Exit codes: 0 ok, 1 failed, 2 usage or configuration error, 3 partial (some builders or entries failed), 130 interrupted.
Every command that prints a table takes --json. Documentation: README.md and docs/ (start with nixpool local up).`;

/**
 * Builds the commander program for `argv`: the command it runs is loaded and registered in
 * full; every other command is a stub that only lists itself in `nixpool --help`.
 */
export async function buildProgram(argv: readonly string[]): Promise<Command> {
  const program = new Command("nixpool")
    .description("Remote Nix builders made easy, fast and safe.")
    .version(packageVersion())
    .option(
      "--inventory <path>",
      "inventory file (default ./nixpool.toml, then ~/.config/nixpool/nixpool.toml)",
    )
    .option(
      "--state-dir <dir>",
      "state directory (default $NIXPOOL_STATE_DIR, else /var/lib/nixpool as root, else $XDG_STATE_HOME/nixpool)",
    )
    .addHelpText("after", HELP_FOOTER)
    .showHelpAfterError()
    .exitOverride();
  const stubTerms = new Map<Command, string>();
  program.configureHelp({
    subcommandTerm(this: Help, cmd: Command): string {
      return stubTerms.get(cmd) ?? Help.prototype.subcommandTerm.call(this, cmd);
    },
  });
  const chosen = COMMANDS.find((c) => c.name === commandNameOf(argv));
  const loaded = chosen && (await Promise.all([import("./context.js"), chosen.load()]));
  const context = (): Context => {
    if (!loaded) throw new Error("a command asked for its context before it was loaded");
    return new loaded[0].Context(program.opts<GlobalFlags>(), BUILDER_SOURCES);
  };
  for (const c of COMMANDS) {
    if (c === chosen && loaded) loaded[1](program, context);
    else stubTerms.set(program.command(c.name).description(c.description), c.term);
  }
  return program;
}

function describeCause(e: unknown): string[] {
  const lines: string[] = [];
  let cause = (e as { cause?: unknown }).cause;
  while (cause instanceof Error) {
    lines.push(`  caused by: ${cause.message}`);
    cause = (cause as { cause?: unknown }).cause;
  }
  return lines;
}

/** Runs the CLI and returns the exit code (see docs/exit-codes.md). */
export async function main(argv: string[]): Promise<number> {
  const program = await buildProgram(joinNixArgPairs(argv));
  program.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    await program.parseAsync(joinNixArgPairs(argv));
    return typeof process.exitCode === "number" ? process.exitCode : ExitCode.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    if (isNixpoolError(e)) {
      const json = argv.includes("--json");
      if (json) {
        process.stdout.write(
          `${redact(JSON.stringify({ error: { code: e.code, message: e.message, hint: e.hint, ...(e.details ? { details: e.details } : {}) } }, null, 2))}\n`,
        );
      }
      process.stderr.write(`error: ${redactForTerminal(e.message)}\n`);
      for (const l of describeCause(e)) process.stderr.write(`${redactForTerminal(l)}\n`);
      if (e.hint) process.stderr.write(`hint: ${redactForTerminal(e.hint)}\n`);
      return e.exitCode;
    }
    const fsError = e as NodeJS.ErrnoException;
    if (fsError.path && ["EACCES", "EPERM", "EROFS", "ENOSPC", "ENOTDIR"].includes(fsError.code ?? "")) {
      const why = {
        EACCES: "permission denied",
        EPERM: "operation not permitted",
        EROFS: "read-only file system",
        ENOSPC: "no space left on the device",
        ENOTDIR: "a parent is not a directory",
      }[fsError.code as "EACCES"];
      process.stderr.write(`error: Cannot use ${fsError.path}: ${why}.\n`);
      process.stderr.write(
        "hint: Choose a state directory you can write with --state-dir DIR (or NIXPOOL_STATE_DIR), or fix the path's owner and mode.\n",
      );
      return ExitCode.failed;
    }
    process.stderr.write(
      `internal error: ${redact(e instanceof Error ? (e.stack ?? e.message) : String(e))}\n`,
    );
    return ExitCode.failed;
  }
}
