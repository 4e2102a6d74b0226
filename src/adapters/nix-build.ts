import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import { statePaths } from "../config/state-paths.js";
import { sshAlias, storeUri, type Builder } from "../core/builder.js";
import {
  applyBuildLogLine,
  createBuildLogState,
  derivationName,
  failedDerivation,
  type BuildLogState,
} from "../core/build-log.js";
import { ExitCode, NixpoolError } from "../core/errors.js";
import { formatMachinesDiagnostic } from "../core/machines-parse.js";
import { isDaemonBuilding } from "../core/nix-store-kind.js";
import { renderMachinesFile } from "../core/machines.js";
import { compareNatural } from "../core/natural-order.js";
import { evalFailure, splitNixMessages } from "../core/nix-eval-errors.js";
import { builderConnectionError, noBuildersError } from "../core/builder-connection-error.js";
import { classifySshFailure, machinesWithConnectionErrors } from "../core/ssh-errors.js";
import { renderKnownHosts, renderSshConfig } from "../core/ssh-config.js";
import type { NixArg } from "../core/installable.js";
import { readFileIfExists, writeFileAtomic } from "./fs.js";
import { loadMachines } from "./machines-file.js";
import { probeStoreFacts } from "./nix-store-probe.js";
import { run } from "./runner.js";

export interface NixBuildRequest {
  builders: Builder[];
  stateDir: string;
  /** What nix-build gets: Nix files (with `attrs` and `args`), or evaluated derivations as `DRV!OUTPUT`. */
  paths: readonly string[];
  attrs?: readonly string[];
  args?: readonly NixArg[];
  /** GC root for the result (default ./result like nix-build); null: none. */
  outLink?: string | null | undefined;
  signal?: AbortSignal;
  /** Called with each derivation as its build starts and ends. */
  onProgress?: (event: BuildProgress) => void;
  env?: Record<string, string | undefined>;
  /** Seconds before the whole build is abandoned; default none. */
  timeoutMs?: number;
}

/** What a running build reports: a derivation started or finished on a builder, or printed a log line. */
export type BuildProgress =
  | { kind: "start" | "done"; name: string; builder: string }
  | { kind: "log"; name: string; builder: string; line: string };

/** One derivation of a finished build: where it was built and how long it took. */
export interface BuiltDerivation {
  drv: string;
  name: string;
  /** Builder name, or "local" if Nix built it on this machine. */
  builder: string;
  machine: string;
  durationMs: number | null;
}

export interface NixBuildResult {
  outputs: string[];
  outLink: string | null;
  derivations: BuiltDerivation[];
  wallMs: number;
  /** How many times Nix waited for a free machine slot. */
  machineWaits: number;
}

/** Files nixpool hands to Nix and ssh for a build: machines, ssh_config, known_hosts. */
export interface ClientFiles {
  dir: string;
  machines: string;
  sshConfig: string;
  knownHosts: string;
}

/** Writes the client-side machines file, ssh_config and known_hosts under STATE/client (only when changed). */
export async function writeClientFiles(stateDir: string, builders: readonly Builder[]): Promise<ClientFiles> {
  const files: ClientFiles = statePaths(stateDir).client;
  await mkdir(files.dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(files.knownHosts, renderKnownHosts(builders));
  await writeFileAtomic(files.sshConfig, renderSshConfig(builders, { knownHostsFile: files.knownHosts }));
  await writeFileAtomic(files.machines, renderMachinesFile(builders));
  return files;
}

/** Environment that points Nix's ssh at nixpool's own ssh_config (never the user's ~/.ssh). */
export function nixSshEnv(files: Pick<ClientFiles, "sshConfig">): Record<string, string> {
  return { NIX_SSHOPTS: `-F ${files.sshConfig}` };
}

/** The nix-build argv: no local builds (max-jobs 0), our machines file, no substituters, JSON log. */
export function nixBuildArgv(
  req: NixBuildRequest,
  outLink: string | null,
  machinesFile: string | undefined,
): string[] {
  const argv = ["nix-build", ...req.paths.map((p) => (p.startsWith("/nix/store/") ? p : resolve(p)))];
  for (const a of req.attrs ?? []) argv.push("-A", a);
  for (const a of req.args ?? []) argv.push(`--${a.kind}`, a.name, a.value);
  argv.push(...(outLink === null ? ["--no-out-link"] : ["--out-link", outLink]), "--max-jobs", "0");
  if (machinesFile) argv.push("--builders", `@${machinesFile}`);
  argv.push("--option", "substituters", "", "--option", "builders-use-substitutes", "false");
  argv.push("--log-format", "internal-json");
  return argv;
}

/** The system machines file the daemon reads; exported for tests that run in a private mount namespace. */
export const SYSTEM_MACHINES_FILE = "/etc/nix/machines";

/**
 * In daemon mode the builders must come from `nixpool config apply`: the system machines file
 * must be nixpool's and list every builder this user sees. It is read with the one machines
 * parser (machines-parse.ts), as the daemon's build hook reads it, includes and all.
 */
async function checkDaemonConfig(builders: readonly Builder[]): Promise<void> {
  const text =
    (await readFileIfExists(SYSTEM_MACHINES_FILE).catch((e: NodeJS.ErrnoException) => {
      throw new NixpoolError(
        "MACHINES_FILE_UNREADABLE",
        `Cannot read the daemon's machines file ${SYSTEM_MACHINES_FILE}: ${e.code ?? e.message}.`,
        { hint: `Make it readable (as root): chmod 644 ${SYSTEM_MACHINES_FILE}`, exitCode: ExitCode.usage },
      );
    })) ?? "";
  const parsed = await loadMachines(SYSTEM_MACHINES_FILE, text);
  const refused = parsed.diagnostics.filter((d) => d.severity === "error");
  const uris = new Set(parsed.machines.map((m) => m.storeUri));
  const missing = builders.filter((b) => !uris.has(storeUri(b)));
  const isNixpoolFile = text.startsWith("# Generated by nixpool") && parsed.machines.length > 0;
  if (!isNixpoolFile || missing.length > 0 || refused.length > 0) {
    throw new NixpoolError(
      "DAEMON_NEEDS_APPLY",
      refused.length > 0
        ? `A Nix daemon performs your builds, and Nix refuses its machines file: ${refused.map(formatMachinesDiagnostic).join("; ")}.`
        : isNixpoolFile
          ? `A Nix daemon performs your builds, and ${SYSTEM_MACHINES_FILE} lacks builders ${missing.map((b) => b.name).join(", ")}.`
          : "A Nix daemon performs your builds, and it ignores nixpool's builders until they are in the system configuration.",
      {
        hint: "Install them for the daemon (as root): sudo nixpool config apply; then run nixpool build again.",
        exitCode: ExitCode.usage,
      },
    );
  }
}

/** Maps a machine URI from Nix's log back to a builder name. */
export function builderForMachine(machine: string, builders: readonly Builder[]): string {
  if (!machine) return "local";
  const host = machine.replace(/^[a-z-]+:\/\//, "").replace(/^[^@]*@/, "");
  const known = builders.find((b) => sshAlias(b) === host || b.host === host)?.name;
  // In daemon mode this user may not see the builders; nixpool's aliases still name them.
  return known ?? (host.startsWith("nixpool-") ? host.slice("nixpool-".length) : machine);
}

function summarise(state: BuildLogState, builders: readonly Builder[]): BuiltDerivation[] {
  return [...state.builds.values()]
    .sort((a, b) => compareNatural(derivationName(a.drv), derivationName(b.drv)) || a.startedMs - b.startedMs)
    .map((b) => ({
      drv: b.drv,
      name: derivationName(b.drv),
      builder: builderForMachine(b.machine, builders),
      machine: b.machine,
      durationMs: b.finishedMs === undefined ? null : b.finishedMs - b.startedMs,
    }));
}

/**
 * Builds a Nix file with the real nix-build, offloading every derivation to the builders
 * through Nix's build hook, and reports which builder built what and how long it took.
 */
export async function runNixBuild(req: NixBuildRequest): Promise<NixBuildResult> {
  const env = { ...process.env, ...(req.env ?? {}) };
  const usable = req.builders.filter((b) => b.hostKey);
  let machinesArg: string | undefined;
  let files: ClientFiles | undefined;
  if (isDaemonBuilding(await probeStoreFacts(env))) {
    // The daemon's hook runs as root and ignores our --builders and NIX_SSHOPTS: the applied
    // system configuration must hold the builders.
    await checkDaemonConfig(usable);
  } else {
    if (usable.length === 0) throw noBuildersError(req.builders.length);
    files = await writeClientFiles(req.stateDir, usable);
    machinesArg = files.machines;
  }
  const outLink = req.outLink === null ? null : resolve(req.outLink ?? "result");
  const state = createBuildLogState();
  const started = Date.now();
  const result = await run(nixBuildArgv(req, outLink, machinesArg), {
    env: { ...(files ? nixSshEnv(files) : {}), ...(req.env ?? {}) },
    timeout: req.timeoutMs ?? 0,
    reject: false,
    ...(req.signal ? { signal: req.signal } : {}),
    onStderrLine: (line) => {
      const event = applyBuildLogLine(state, line, Date.now());
      if (event && req.onProgress) {
        const where = {
          name: derivationName(event.build.drv),
          builder: builderForMachine(event.build.machine, usable),
        };
        req.onProgress(
          event.kind === "log" ? { kind: "log", line: event.line, ...where } : { kind: event.kind, ...where },
        );
      }
    },
  });
  const derivations = summarise(state, usable);
  if (result.exitCode !== 0) {
    const evaluation = evalFailure(result.stderr, resolve(req.paths[0] ?? "."));
    if (evaluation) throw evaluation;
    const unreachable = files
      ? await diagnoseConnections(state.errors.join("\n") + result.stderr, usable, files)
      : undefined;
    throw unreachable ?? buildFailure(state, derivations, result.stderr);
  }
  const outputs = result.stdout.split("\n").filter((l) => l.startsWith("/nix/store/"));
  return { outputs, outLink, derivations, wallMs: Date.now() - started, machineWaits: state.waits };
}

/**
 * Nix reports a failed builder connection as "unexpected end-of-file"; ask ssh itself, with the
 * same config, what went wrong, so the error names the cause.
 */
async function diagnoseConnections(
  text: string,
  builders: readonly Builder[],
  files: ClientFiles,
): Promise<NixpoolError | undefined> {
  for (const machine of machinesWithConnectionErrors(text)) {
    const name = builderForMachine(machine, builders);
    const b = builders.find((x) => x.name === name);
    if (!b) continue;
    const probe = await run(["ssh", "-F", files.sshConfig, sshAlias(b), "true"], {
      reject: false,
      timeout: 20_000,
    });
    if (probe.exitCode === 0) continue;
    return builderConnectionError(b, classifySshFailure(probe.stderr), probe.stderr);
  }
  return undefined;
}

function buildFailure(state: BuildLogState, derivations: BuiltDerivation[], stderr: string): NixpoolError {
  const drv = failedDerivation(state.errors);
  const built = derivations.find((d) => d.drv === drv);
  const tail = (drv ? state.builds.get(drv)?.logTail : undefined) ?? [];
  const nixError =
    state.errors.join("\n").trim() ||
    splitNixMessages(stderr)
      .filter((m) => !m.startsWith("warning:"))
      .slice(-10)
      .join("\n");
  const plainErrors = state.errors.join("\n");
  let hint = "Run nixpool doctor to check the builders.";
  if (/Failed to find a machine|unable to start any build/.test(plainErrors))
    hint =
      "No builder can build this derivation (system or features). Check with: nixpool builders; nixpool doctor";
  else if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/.test(stderr + plainErrors))
    hint = "A builder's host key does not match the pinned key. Check it with: nixpool doctor";
  const message = drv
    ? `Derivation ${derivationName(drv)} failed${built && built.builder !== "local" ? ` on builder ${built.builder}` : ""}.`
    : `The build failed: ${nixError.split("\n")[0] ?? "see the log above"}`;
  return new NixpoolError("BUILD_FAILED", message, {
    hint,
    details: {
      derivation: drv ?? null,
      builder: built?.builder ?? null,
      logTail: tail,
      nixError,
    },
  });
}
