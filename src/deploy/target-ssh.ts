import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { writeFileAtomic } from "../adapters/fs.js";
import { ServeSession } from "../adapters/nix-serve-session.js";
import { run, type RunOptions, type RunResult } from "../adapters/runner.js";
import {
  renderTargetKnownHosts,
  targetServeArgv,
  targetSshArgv,
  type TargetSsh,
  type TargetSshOptions,
} from "../core/deploy/target-ssh-argv.js";
import { classifySudoRefusal, targetConnectionError, targetSudoError } from "../core/deploy/target-errors.js";
import { NixpoolError, isNixpoolError } from "../core/errors.js";
import { classifySshFailure, type SshFailure } from "../core/ssh-errors.js";

/** A target and how to reach it: its pinned key lives in `knownHostsFile` (writeTargetKnownHosts). */
export interface TargetLink extends Omit<TargetSshOptions, "fresh" | "forwardAgent"> {
  target: TargetSsh;
  /** An agent to forward to the target (startForwardedAgent): its certificate lets pam-ussh pass sudo. */
  agentSocket?: string;
}

/** ssh options and environment of a link (the agent reaches ssh through SSH_AUTH_SOCK). */
function linkOptions(link: TargetLink, fresh: boolean | undefined) {
  const { target: _t, agentSocket, ...o } = link;
  return {
    options: { ...o, ...(fresh ? { fresh: true } : {}), ...(agentSocket ? { forwardAgent: true } : {}) },
    env: agentSocket ? { SSH_AUTH_SOCK: agentSocket } : undefined,
  };
}

/** Writes the known_hosts pinning the targets' keys (directory 0700, only when changed); returns its path. */
export async function writeTargetKnownHosts(file: string, targets: readonly TargetSsh[]): Promise<string> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, renderTargetKnownHosts(targets), { mode: 0o644 });
  return file;
}

function tailOf(stderr: string): string {
  return stderr.trim().split("\n").slice(-5).join("\n");
}

/**
 * The error of a command whose ssh or sudo refused (host key, login, network, sudo -n), or
 * undefined when the remote command itself ran.
 */
export function targetRefusal(
  t: TargetSsh,
  exitCode: number | undefined,
  stderr: string,
  sshFailure?: SshFailure,
): NixpoolError | undefined {
  // ssh exits 255 for its own failures; the remote command's status otherwise.
  const ssh = exitCode === 255 ? (sshFailure ?? classifySshFailure(stderr)) : undefined;
  if (ssh !== undefined && ssh !== "unknown") return targetConnectionError(t, ssh, stderr);
  if (t.sudo && exitCode !== 0) {
    const why = classifySudoRefusal(stderr);
    if (why) return targetSudoError(t, why, stderr);
  }
  return undefined;
}

export interface TargetRunOptions extends Pick<RunOptions, "timeout" | "signal" | "input" | "onStderrLine"> {
  /** A new ssh connection of its own (deploy's confirmation that the target accepts logins). */
  fresh?: boolean;
  /** Return a non-zero exit of the remote command instead of throwing (ssh and sudo refusals still throw). */
  reject?: boolean;
}

/**
 * Runs argv on a target over ssh (through `sudo -n` when the target says so). Refusals are
 * classified: HOST_KEY_MISMATCH (nothing was sent), TARGET_UNREACHABLE, TARGET_AUTH_FAILED,
 * TARGET_SUDO_REFUSED…; a failing remote command is TARGET_COMMAND_FAILED unless `reject` is false.
 */
export async function runOnTarget(
  link: TargetLink,
  argv: readonly string[],
  options: TargetRunOptions = {},
): Promise<RunResult> {
  const t = link.target;
  const { options: sshOptions, env } = linkOptions(link, options.fresh);
  const r = await run(targetSshArgv(t, sshOptions, argv), {
    ...(env ? { env } : {}),
    timeout: options.timeout ?? 120_000,
    reject: false,
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.input !== undefined ? { input: options.input } : {}),
    ...(options.onStderrLine ? { onStderrLine: options.onStderrLine } : {}),
  });
  const refused = targetRefusal(t, r.exitCode, r.stderr);
  if (refused) throw refused;
  if (r.exitCode !== 0 && options.reject !== false) {
    // A script passed as one word (sh -c SCRIPT) is named, not printed: the message stays one sentence.
    const script = argv.some((a) => a.includes("\n") || a.length > 120);
    const shown = argv.map((a) => (a.includes("\n") || a.length > 120 ? "SCRIPT" : a)).join(" ");
    const login = `ssh -p ${t.port} ${t.user ? `${t.user}@` : ""}${t.host}`;
    throw new NixpoolError(
      "TARGET_COMMAND_FAILED",
      `${shown} failed on target ${t.name} with exit ${r.exitCode}${r.stderr.trim() ? `: ${tailOf(r.stderr).split("\n").slice(-2).join(" / ")}` : ""}.`,
      {
        hint: script
          ? `It was one of nixpool's deploy scripts; log in and look at the target: ${login}`
          : `Run it by hand to see more: ${login} ${argv.join(" ")}`,
        details: { target: t.name, exitCode: r.exitCode, stderr: tailOf(r.stderr) },
      },
    );
  }
  return r;
}

/** Proves the target accepts a new login now: `true` over a fresh connection (no shared ssh master). */
export async function checkTargetLogin(
  link: TargetLink,
  options: Pick<TargetRunOptions, "timeout" | "signal"> = {},
): Promise<void> {
  await runOnTarget(link, ["true"], { ...options, fresh: true });
}

/**
 * Opens a `nix-store --serve --write` session on the target (as root through `sudo -n` when
 * the target says so), with ssh and sudo refusals classified as runOnTarget does.
 */
export async function openTargetServe(
  link: TargetLink,
  options: { signal?: AbortSignal; fresh?: boolean; onStderrLine?: (line: string) => void } = {},
): Promise<ServeSession> {
  const t = link.target;
  try {
    const { options: sshOptions, env } = linkOptions(link, options.fresh);
    return await ServeSession.open({
      argv: targetServeArgv(t, sshOptions),
      ...(env ? { env } : {}),
      name: `target ${t.name}`,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onStderrLine ? { onStderrLine: options.onStderrLine } : {}),
    });
  } catch (e) {
    if (!isNixpoolError(e)) throw e;
    const d = e.details as { sshFailure?: SshFailure; stderr?: string[]; exitCode?: number } | undefined;
    const stderr = (d?.stderr ?? []).join("\n");
    throw targetRefusal(t, d?.exitCode, stderr, d?.sshFailure) ?? e;
  }
}
