// `nixpool deploy --install`: the "installing a new host" routine. The new machine runs a NixOS
// installer with its disks mounted under ROOT; nixpool builds its system on the pool, copies the
// closure into the installer's store, and runs `nixos-install --system PATH` there. No watchdog
// and no activation: the system takes over when the machine reboots.
import { ExitCode, NixpoolError } from "../errors.js";
import { quoteShellWord } from "../shell-word.js";

/** Where an installer mounts the new system's file systems (nixos-install's own default). */
export const DEFAULT_INSTALL_ROOT = "/mnt";

/** The flags of `nixpool deploy` that bear on --install. */
export interface InstallFlags {
  install?: boolean | undefined;
  root?: string | undefined;
  rollback?: boolean | undefined;
  generations?: boolean | undefined;
  action?: string | undefined;
  activate?: string | undefined;
  confirmTimeout?: string | undefined;
}

/**
 * Refuses what --install cannot mean: a rollback, a generations listing, an activation's
 * action, program or confirmation (nothing is activated); and --root without --install.
 */
export function checkInstallFlags(f: InstallFlags): void {
  if (!f.install) {
    if (f.root !== undefined)
      throw new NixpoolError("FLAG_CONFLICT", "--root is the installed system's root, for --install only.", {
        hint: "For example: nixpool deploy .#newhost --target newhost --install --root /mnt",
        exitCode: ExitCode.usage,
      });
    return;
  }
  const conflict = (
    [
      ["--rollback", f.rollback === true],
      ["--generations", f.generations === true],
      ["--action", f.action !== undefined],
      ["--activate", f.activate !== undefined],
      ["--confirm-timeout", f.confirmTimeout !== undefined],
    ] as const
  ).find(([, used]) => used)?.[0];
  if (conflict === undefined) return;
  throw new NixpoolError(
    "FLAG_CONFLICT",
    `--install runs nixos-install on a new host and activates nothing there, so ${conflict} does not apply.`,
    {
      hint: "Install first, reboot the host into its system, then deploy to it: nixpool deploy .#newhost --target newhost --install",
      exitCode: ExitCode.usage,
    },
  );
}

/** Reads --root: an absolute directory on the target, /mnt when absent; never / (the running installer). */
export function parseInstallRoot(v: string | undefined): string {
  if (v === undefined) return DEFAULT_INSTALL_ROOT;
  const trimmed = v.length > 1 ? v.replace(/\/+$/, "") : v;
  const ok =
    /^\/[A-Za-z0-9_.+@=:,/-]*$/.test(trimmed) && trimmed !== "/" && !trimmed.split("/").includes("..");
  if (!ok)
    throw new NixpoolError(
      "USAGE",
      `--root must be an absolute directory on the target other than / (got "${v}").`,
      {
        hint: "Mount the new system's file systems under /mnt on the installer, then: nixpool deploy .#newhost --target newhost --install --root /mnt",
        exitCode: ExitCode.usage,
      },
    );
  return trimmed;
}

/** The program the installer runs. */
export const INSTALL_PROGRAM = "nixos-install";

/**
 * argv of the install on the target: the system already in the installer's store is copied into
 * ROOT's store and made its first generation; no root password prompt (set one in the
 * configuration), no channel copied (a flake's system needs none).
 */
export function nixosInstallArgv(system: string, root: string): string[] {
  if (!system.startsWith("/nix/store/")) throw new Error(`nixosInstallArgv: not a store path: ${system}`);
  return [INSTALL_PROGRAM, "--system", system, "--root", root, "--no-root-passwd", "--no-channel-copy"];
}

/** What the preflight script prints: the target can install, or why not. */
export const PREFLIGHT_ANSWERS = ["ready", "no-program", "no-root"] as const;
export type PreflightAnswer = (typeof PREFLIGHT_ANSWERS)[number];

/**
 * Before anything is copied: is nixos-install on the target's PATH, and is ROOT a directory
 * there? $1 root. Prints one of PREFLIGHT_ANSWERS.
 */
export const INSTALL_PREFLIGHT_SCRIPT = `command -v ${INSTALL_PROGRAM} > /dev/null 2>&1 || { echo no-program; exit 0; }
[ -d "$1" ] || { echo no-root; exit 0; }
echo ready
`;

/** argv of the preflight (the root as a positional parameter, never script text). */
export function installPreflightArgv(root: string): string[] {
  return ["sh", "-c", INSTALL_PREFLIGHT_SCRIPT, "sh", root];
}

/** How a target is logged in to by hand, for hints. */
export interface TargetLogin {
  name: string;
  host: string;
  port: number;
  user: string | undefined;
}

function loginCommand(t: TargetLogin): string {
  return `ssh -p ${t.port} ${t.user ? `${t.user}@` : ""}${t.host}`;
}

/** DEPLOY_INSTALL_NOT_READY for a preflight answer other than ready; undefined when ready. */
export function preflightError(t: TargetLogin, root: string, answer: string): NixpoolError | undefined {
  if (answer.trim() === "ready") return undefined;
  if (answer.trim() === "no-root")
    return new NixpoolError(
      "DEPLOY_INSTALL_NOT_READY",
      `Target ${t.name} has no directory ${root} to install into; nothing was copied.`,
      {
        hint: `Partition and mount the new system's file systems under ${root} on the installer (${loginCommand(t)}), or name where they are with --root DIR.`,
      },
    );
  if (answer.trim() === "no-program")
    return new NixpoolError(
      "DEPLOY_INSTALL_NOT_READY",
      `Target ${t.name} has no ${INSTALL_PROGRAM} on its PATH (is it booted from a NixOS installer?); nothing was copied.`,
      {
        hint: `Boot ${t.name} from a NixOS installer image, then check with: ${loginCommand(t)} command -v ${INSTALL_PROGRAM}`,
      },
    );
  return new NixpoolError(
    "DEPLOY_TARGET_ANSWER_INVALID",
    `Target ${t.name} answered the install check with "${answer.trim().slice(0, 80)}", not one of ${PREFLIGHT_ANSWERS.join(", ")}.`,
    { hint: `Log in and look at its shell's start-up files: ${loginCommand(t)}` },
  );
}

/** The last lines of a program's stderr, for a message (one line) and details (several). */
export function stderrTail(stderr: string, lines: number): string {
  return stderr
    .trim()
    .split("\n")
    .filter((l) => l.trim() !== "")
    .slice(-lines)
    .join("\n");
}

/** DEPLOY_INSTALL_FAILED: nixos-install exited non-zero on the target; its stderr tail says why. */
export function installFailedError(
  t: TargetLogin,
  system: string,
  root: string,
  exitCode: number | undefined,
  stderr: string,
): NixpoolError {
  const last = stderrTail(stderr, 1);
  return new NixpoolError(
    "DEPLOY_INSTALL_FAILED",
    `${INSTALL_PROGRAM} failed on target ${t.name} with exit ${exitCode ?? "?"}${last ? `: ${last}` : ""}.`,
    {
      hint: `The system is in the installer's store; fix the cause and run it again: ${loginCommand(t)} ${nixosInstallArgv(system, root).map(quoteShellWord).join(" ")}`,
      details: { target: t.name, exitCode, stderr: stderrTail(stderr, 20) },
    },
  );
}

/**
 * INTERRUPTED (130) during nixos-install: nixpool stopped waiting; on the target the install may
 * run on or stop half way, so ROOT is not known to be bootable.
 */
export function installInterruptedError(t: TargetLogin, system: string, root: string): NixpoolError {
  return new NixpoolError(
    "INTERRUPTED",
    `Interrupted during nixos-install on target ${t.name}: it may still be running there or have stopped half way, so ${root} may not boot yet.`,
    {
      hint: `Run it again to be sure (the system is in the installer's store): ${loginCommand(t)} ${nixosInstallArgv(system, root).map(quoteShellWord).join(" ")}`,
      exitCode: ExitCode.interrupted,
      details: { target: t.name },
    },
  );
}

/** What to do once the system is installed: reboot into it, and pin the host key it will present. */
export function installNextStep(t: TargetLogin, root: string): string {
  return (
    `reboot ${t.name} into its new system (${loginCommand(t)} reboot); ` +
    `it then presents the host key of the installed system, not the installer's: pin that one as ${t.name}'s hostKey before deploying to it again` +
    ` (no root password was set: give one in the configuration, or run nixos-enter --root ${root} -c passwd first)`
  );
}
