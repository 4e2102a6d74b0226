import type { TargetOutcome } from "../core/deploy/deploy-outcome.js";
import {
  installFailedError,
  installInterruptedError,
  installNextStep,
  installPreflightArgv,
  nixosInstallArgv,
  preflightError,
} from "../core/deploy/install.js";
import type { DeployTarget } from "../core/deploy/target.js";
import { isNixpoolError } from "../core/errors.js";
import { copySystem, deployOne, linkTargets, mapBounded, type DeployOptions } from "./run-deploy.js";
import type { BuiltSystem } from "./system-build.js";
import { runOnTarget, type TargetLink } from "./target-ssh.js";

/** How long nixos-install may take on the target (it copies the whole closure into ROOT's store). */
export const INSTALL_TIMEOUT_MS = 60 * 60_000;

export interface InstallOptions extends Pick<
  DeployOptions,
  "stateDir" | "parallel" | "builderSshConfig" | "signal" | "onProgress"
> {
  /** The new system's root on the target, where its file systems are mounted (--root, /mnt). */
  root: string;
}

/**
 * Checks, before anything is built or copied, that every target can install: nixos-install on
 * its PATH (booted from a NixOS installer) and ROOT a directory there. The first connection to
 * each, through its pinned host key (HOST_KEY_MISMATCH stops here). Throws the first target's
 * DEPLOY_INSTALL_NOT_READY.
 */
export async function checkInstallTargets(
  targets: readonly DeployTarget[],
  o: Pick<InstallOptions, "stateDir" | "root" | "signal" | "onProgress">,
): Promise<void> {
  const links = await linkTargets(o.stateDir, targets);
  const errors = await Promise.all(
    links.map(async (link) => {
      o.onProgress?.(link.target.name, `checking that it can install under ${o.root}`);
      const answer = await runOnTarget(link, installPreflightArgv(o.root), {
        timeout: 60_000,
        ...(o.signal ? { signal: o.signal } : {}),
      });
      return preflightError(link.target, o.root, answer.stdout);
    }),
  );
  const first = errors.find((e) => e !== undefined);
  if (first) throw first;
}

/**
 * Installs a built system on new hosts booted from a NixOS installer (checkInstallTargets first):
 * keeps a GC root where the system was built, copies the closure into the installer's store (the
 * pinned host key and copy routes of a deploy), and runs `nixos-install --system PATH --root
 * ROOT` there. Nothing is activated; each outcome says what to do next (reboot). One target
 * failing does not stop the others.
 */
export async function installSystem(
  system: BuiltSystem,
  targets: readonly DeployTarget[],
  o: InstallOptions,
): Promise<TargetOutcome[]> {
  const links = await linkTargets(o.stateDir, targets);
  return mapBounded(targets, o.parallel, (t) => {
    const link = links[targets.indexOf(t)] as TargetLink;
    return deployOne(t, link, o, async (progress) => {
      const copy = await copySystem(system, t, link, o, progress);
      progress(`running nixos-install --root ${o.root}`);
      const r = await runOnTarget(link, nixosInstallArgv(system.path, o.root), {
        timeout: INSTALL_TIMEOUT_MS,
        reject: false,
        ...(o.signal ? { signal: o.signal } : {}),
      }).catch((e: unknown) => {
        if (isNixpoolError(e) && e.code === "INTERRUPTED")
          throw installInterruptedError(t, system.path, o.root);
        throw e;
      });
      if (r.exitCode !== 0) throw installFailedError(t, system.path, o.root, r.exitCode, r.stderr);
      progress(`installed under ${o.root}`);
      return {
        status: "installed",
        generation: undefined,
        path: system.path,
        copied: copy.sent.length,
        route: copy.route,
        next: installNextStep(t, o.root),
      };
    });
  });
}
