import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { ExitCode, isNixpoolError } from "../core/errors.js";
import { redact, redactForTerminal } from "../core/redact.js";
import { Context, type BuilderSourceReader, type GlobalFlags } from "./context.js";
import { readPoolBuilders } from "../providers/local/records.js";
import { readWorkerBuilders } from "../providers/hetzner/records.js";
import { commandModules } from "./commands.js";
import { joinNixArgPairs } from "./nix-args.js";

/** nixpool's version, from its package.json (dist/cli/ and src/cli/ are both two levels down). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  };
  return pkg.version;
}

/** Builders beyond the inventory: the local pool and rented workers, read from the state directory. */
const BUILDER_SOURCES: readonly BuilderSourceReader[] = [readPoolBuilders, readWorkerBuilders];

const HELP_FOOTER = `
Exit codes: 0 ok, 1 failed, 2 usage or configuration error, 3 partial (some builders or entries failed), 130 interrupted.
Every command that prints a table takes --json. Documentation: README.md and docs/ (start with nixpool local up).`;

/** Builds the commander program; each command module adds its subcommands. */
export function buildProgram(): Command {
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
  const context = () => new Context(program.opts<GlobalFlags>(), BUILDER_SOURCES);
  for (const register of commandModules) register(program, context);
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
  const program = buildProgram();
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
