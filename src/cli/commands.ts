import type { Command } from "commander";
import type { Context } from "./context.js";

/** A command module adds its subcommands to the program. */
export type RegisterCommands = (program: Command, context: () => Context) => void;

/**
 * Every top-level command: its name, the term and description `nixpool --help` lists, and its
 * module, loaded only when that command runs (so `--version`, `--help` and each command load no
 * other command's modules). test/unit/commands-table.test.ts checks the table against the modules.
 */
export interface CommandEntry {
  name: string;
  term: string;
  description: string;
  load: () => Promise<RegisterCommands>;
}

export const COMMANDS: readonly CommandEntry[] = [
  {
    name: "builders",
    term: "builders [options]",
    description: "list every builder: the inventory's, the local pool's and rented workers'",
    load: async () => (await import("../commands/builders.js")).registerBuilders,
  },
  {
    name: "local",
    term: "local",
    description: "a pool of real builder hosts on this machine (root)",
    load: async () => (await import("../commands/local.js")).registerLocal,
  },
  {
    name: "build",
    term: "build [options] <installables...>",
    description: "build flake outputs or Nix files on the pool's builders and copy the results back",
    load: async () => (await import("../commands/build.js")).registerBuild,
  },
  {
    name: "check",
    term: "check [options] [flake]",
    description:
      "build a flake's checks on the pool (and evaluate its packages and NixOS systems), as nix flake check",
    load: async () => (await import("../commands/check.js")).registerCheck,
  },
  {
    name: "deploy",
    term: "deploy [options] [installable]",
    description: "build a system on the pool and activate it on targets, rolling back on failure",
    load: async () => (await import("../commands/deploy.js")).registerDeploy,
  },
  {
    name: "serve",
    term: "serve [options]",
    description: "run the coordinator: one queue for every client of the pool, its API and dashboard",
    load: async () => (await import("../commands/serve.js")).registerServe,
  },
  {
    name: "cache",
    term: "cache",
    description: "the pool's binary cache: its signing key, its read-only token, client configuration",
    load: async () => (await import("../commands/cache.js")).registerCache,
  },
  {
    name: "gateway",
    term: "gateway [options]",
    description: "serve Nix's builder protocol on stdin/stdout for one client (sshd's forced command)",
    load: async () => (await import("../commands/gateway.js")).registerGateway,
  },
  {
    name: "verify",
    term: "verify [options] <paths...>",
    description: "build existing outputs again on another builder and compare them (docs/trust.md)",
    load: async () => (await import("../commands/verify.js")).registerVerify,
  },
  {
    name: "emulator",
    term: "emulator",
    description: "local stand-ins for remote services",
    load: async () => (await import("../commands/emulator.js")).registerEmulator,
  },
  {
    name: "worker",
    term: "worker",
    description: "rent temporary cloud builders (Hetzner Cloud)",
    load: async () => (await import("../commands/worker.js")).registerWorker,
  },
  {
    name: "config",
    term: "config",
    description: "render the pool as Nix and OpenSSH configuration, or apply it to this system",
    load: async () => (await import("../commands/config.js")).registerConfig,
  },
  {
    name: "import",
    term: "import [options] <file>",
    description: "import a Nix machines file (e.g. /etc/nix/machines) into the inventory",
    load: async () => (await import("../commands/import.js")).registerImport,
  },
  {
    name: "access",
    term: "access",
    description: "who may use this shared builder, with which key, for how long",
    load: async () => (await import("../commands/access.js")).registerAccess,
  },
  {
    name: "ca",
    term: "ca",
    description: "short-lived SSH certificates for builder users",
    load: async () => (await import("../commands/ca.js")).registerCa,
  },
  {
    name: "doctor",
    term: "doctor [options] [builders...]",
    description: "check this machine and every builder: pass/warn/fail, the cause, and the exact fix",
    load: async () => (await import("../commands/doctor.js")).registerDoctor,
  },
];

/** Options of the program itself that take a value (their value is not a command name). */
const GLOBAL_VALUE_OPTIONS = new Set(["--inventory", "--state-dir"]);

/** The command an argv (node, script, …) runs: the first operand, or the one after `help`. */
export function commandNameOf(argv: readonly string[]): string | undefined {
  const operands: string[] = [];
  for (let i = 2; i < argv.length && operands.length < 2; i++) {
    const a = argv[i] ?? "";
    if (GLOBAL_VALUE_OPTIONS.has(a)) i++;
    else if (!a.startsWith("-")) operands.push(a);
    if (operands[0] !== undefined && operands[0] !== "help") break;
  }
  return operands[0] === "help" ? operands[1] : operands[0];
}
