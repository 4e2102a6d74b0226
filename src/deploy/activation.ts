import { waitFor } from "../adapters/wait-for.js";
import {
  activateArgv,
  armArgv,
  claimArgv,
  cleanupArgv,
  dryActivateArgv,
  restoreArgv,
  SCRIPT_STATUS,
  type ActivationSpec,
} from "../core/deploy/remote-scripts.js";
import { ExitCode, NixpoolError, isNixpoolError } from "../core/errors.js";
import { runOnTarget, type TargetLink } from "./target-ssh.js";

/** Seconds the watchdog waits beyond --confirm-timeout: nixpool confirms first when it can. */
export const WATCHDOG_GRACE_SECONDS = 5;

/** How the activation ended on the target. */
export type ActivationEnd =
  | { status: "activated" }
  /** The activation failed and the restore point was activated again. */
  | { status: "rolled-back"; error: NixpoolError }
  /** No fresh connection in time: the target's watchdog rolls it back (or already did). */
  | { status: "unconfirmed"; error: NixpoolError };

export interface ActivationOptions {
  confirmMs: number;
  signal?: AbortSignal | undefined;
  /** Called as each step starts (progress lines). */
  onStep?: (step: string) => void;
}

const DIR_PATTERN = /^\/[A-Za-z0-9_.+/-]*nixpool-deploy\.[A-Za-z0-9]{8}$/;

function lastLine(text: string): string {
  return (
    text
      .trim()
      .split("\n")
      .filter((l) => l.trim() !== "")
      .at(-1) ?? ""
  );
}

function restoredTo(spec: ActivationSpec): string {
  if (spec.restore.generation !== undefined) return `rolled back to generation ${spec.restore.generation}`;
  if (spec.restore.path !== undefined) return `activated ${spec.restore.path} again`;
  return "there was no previous generation to roll back to";
}

/**
 * Activates a system on a target so that it is never left half-activated: arms a watchdog on
 * the target, changes the profile and runs the activation (neither depending on the ssh
 * connection), then confirms over a fresh connection, which disarms the watchdog. A failed
 * activation is rolled back by nixpool; an unconfirmed one by the watchdog.
 */
export async function activateOnTarget(
  link: TargetLink,
  spec: ActivationSpec,
  o: ActivationOptions,
): Promise<ActivationEnd> {
  const t = link.target;
  const signal = o.signal ? { signal: o.signal } : {};
  if (spec.action === "dry-activate") {
    o.onStep?.("dry-activate");
    await runOnTarget(link, dryActivateArgv(spec.system, spec.program), { timeout: 600_000, ...signal });
    return { status: "activated" };
  }
  o.onStep?.("arming the watchdog");
  const armed = await runOnTarget(link, armArgv(spec), { reject: false, timeout: 60_000, ...signal });
  if (armed.exitCode === SCRIPT_STATUS.noActivation) {
    throw new NixpoolError(
      "DEPLOY_NO_ACTIVATION",
      `The system ${spec.system} has no ${spec.program} to run on target ${t.name}; nothing was changed there.`,
      {
        hint: "Deploy a NixOS system (config.system.build.toplevel), or name the program to run: --activate bin/activate",
        details: { target: t.name, system: spec.system, program: spec.program },
      },
    );
  }
  const dir = lastLine(armed.stdout);
  if (armed.exitCode === SCRIPT_STATUS.busy) {
    throw new NixpoolError(
      "DEPLOY_TARGET_BUSY",
      `Target ${t.name} has an earlier deploy whose watchdog has not decided yet (${dir}); nothing was changed there.`,
      {
        hint: `Wait until it has confirmed or rolled back (its --confirm-timeout + ${WATCHDOG_GRACE_SECONDS} s after that activation ended; ${dir}/activation.log on ${t.name} tells), then: nixpool deploy --generations --target ${t.name}`,
        details: { target: t.name, dir },
      },
    );
  }
  if (armed.exitCode !== 0 || !DIR_PATTERN.test(dir)) {
    throw new NixpoolError(
      "TARGET_COMMAND_FAILED",
      `Target ${t.name} could not arm the deploy watchdog (exit ${armed.exitCode}${armed.stderr.trim() ? `: ${lastLine(armed.stderr)}` : ""}); nothing was changed there.`,
      {
        hint: `Check that ${t.name} has sh, mktemp and setsid (or systemd-run), and a writable /tmp.`,
        details: { target: t.name, stderr: armed.stderr.trim().split("\n").slice(-5).join("\n") },
      },
    );
  }
  o.onStep?.(`${spec.action}`);
  let exitCode: number;
  let output = "";
  try {
    const r = await runOnTarget(link, activateArgv(dir, spec), {
      reject: false,
      timeout: spec.activationLimitSeconds * 1000,
      ...signal,
    });
    exitCode = r.exitCode;
    output = r.stderr;
  } catch (e) {
    // The connection broke mid-activation (a restarted sshd, a changed network): the target
    // carries on alone; a fresh connection says how it ended.
    if (!isNixpoolError(e)) throw e;
    if (e.code === "INTERRUPTED") throw interruptedDuringActivation(link, spec);
    exitCode = 255;
  }
  if (exitCode !== 0 && exitCode !== 255) {
    o.onStep?.("rolling back");
    return restore(link, dir, spec, o, { exitCode, output });
  }
  o.onStep?.("confirming over a fresh connection");
  const claim = await confirm(link, dir, spec, o).catch((e: unknown) => {
    throw isNixpoolError(e) && e.code === "INTERRUPTED" ? interruptedDuringActivation(link, spec) : e;
  });
  if (claim.kind === "watchdog" || claim.kind === "unreached")
    return { status: "unconfirmed", error: claim.error };
  if (claim.activationStatus !== "0") {
    o.onStep?.("rolling back");
    return restore(link, dir, spec, o, { exitCode: Number(claim.activationStatus), output }, true);
  }
  await runOnTarget(link, cleanupArgv(dir), { reject: false, timeout: 30_000 }).catch(() => undefined);
  return { status: "activated" };
}

/** Ctrl-C after the activation started: it carries on alone there, and its watchdog rolls it back. */
function interruptedDuringActivation(link: TargetLink, spec: ActivationSpec): NixpoolError {
  const t = link.target;
  const { generation, path } = spec.restore;
  const to =
    generation !== undefined
      ? `rolls it back to generation ${generation}`
      : path !== undefined
        ? `activates ${path} again`
        : "(with no previous generation) leaves it as it is";
  return new NixpoolError(
    "INTERRUPTED",
    `Interrupted during the activation on target ${t.name}: it runs to its end there, then the target's watchdog ${to} ${spec.confirmSeconds} s later (nothing confirmed it).`,
    {
      hint: `Wait for it, then see: nixpool deploy --generations --target ${t.name}`,
      exitCode: ExitCode.interrupted,
      details: { target: t.name },
    },
  );
}

type Claim =
  | { kind: "claimed"; activationStatus: string }
  | { kind: "watchdog"; error: NixpoolError }
  | { kind: "unreached"; error: NixpoolError };

function unconfirmed(link: TargetLink, spec: ActivationSpec, why: string): NixpoolError {
  const t = link.target;
  return new NixpoolError("DEPLOY_UNCONFIRMED", `Target ${t.name} ${why}.`, {
    hint: `Reach ${t.name} by another way to check it (its watchdog has ${restoredTo(spec)}); then: nixpool deploy --generations --target ${t.name}`,
    details: { target: t.name, restoreGeneration: spec.restore.generation ?? null },
  });
}

/**
 * Confirms the target is reachable over a fresh ssh connection (no shared master) and takes the
 * decision from the watchdog, within o.confirmMs after the activation ended.
 */
async function confirm(
  link: TargetLink,
  dir: string,
  spec: ActivationSpec,
  o: ActivationOptions,
): Promise<Claim> {
  const deadline = Date.now() + o.confirmMs;
  // An activation still running when the connection broke extends the wait, up to its own limit.
  const hardDeadline = Date.now() + spec.activationLimitSeconds * 1000 + o.confirmMs;
  let lastError = "";
  const unreached = (): Claim => ({
    kind: "unreached",
    error: unconfirmed(
      link,
      spec,
      `could not be reached over a fresh ssh connection within ${Math.round(o.confirmMs / 1000)} s after activation (${lastError}); its watchdog ${spec.restore.generation !== undefined ? `rolls it back to generation ${spec.restore.generation}` : "restores the previous system"}`,
    ),
  });
  const result = await waitFor<Claim>(
    async () => {
      const left = deadline - Date.now();
      const connectTimeout = Math.max(1, Math.min(10, Math.ceil(left / 1000)));
      try {
        const r = await runOnTarget({ ...link, connectTimeout }, claimArgv(dir), {
          fresh: true,
          reject: false,
          timeout: Math.max(left, 5000) + 10_000,
          ...(o.signal ? { signal: o.signal } : {}),
        });
        if (r.exitCode === 0) return { kind: "claimed", activationStatus: lastLine(r.stdout) };
        if (r.exitCode === SCRIPT_STATUS.watchdogDecided) {
          // The directory is nixpool's to remove once it has read the watchdog's verdict.
          await runOnTarget(link, cleanupArgv(dir), { reject: false, timeout: 30_000 }).catch(
            () => undefined,
          );
          return {
            kind: "watchdog",
            error: unconfirmed(
              link,
              spec,
              `was not confirmed in time; its watchdog has ${restoredTo(spec)} (rollback exit status ${lastLine(r.stdout) || "unknown"})`,
            ),
          };
        }
        if (r.exitCode === SCRIPT_STATUS.stillActivating && Date.now() < hardDeadline) {
          lastError = "the activation is still running";
          return undefined;
        }
        lastError = `exit ${r.exitCode}: ${lastLine(r.stderr)}`;
      } catch (e) {
        if (!isNixpoolError(e) || e.code === "INTERRUPTED") throw e;
        lastError = e.message;
      }
      return Date.now() < deadline ? undefined : unreached();
    },
    {
      timeoutMs: spec.activationLimitSeconds * 1000 + o.confirmMs,
      intervalMs: 1000,
      ...(o.signal ? { signal: o.signal } : {}),
    },
  );
  return result === false ? unreached() : result;
}

/** After a failed activation: takes the decision (unless already taken), activates the restore point again. */
async function restore(
  link: TargetLink,
  dir: string,
  spec: ActivationSpec,
  o: ActivationOptions,
  failure: { exitCode: number; output: string },
  claimed = false,
): Promise<ActivationEnd> {
  const t = link.target;
  const signal = o.signal ? { signal: o.signal } : {};
  if (!claimed) {
    const c = await runOnTarget(link, claimArgv(dir), { reject: false, timeout: 60_000, ...signal });
    if (c.exitCode === SCRIPT_STATUS.watchdogDecided)
      return {
        status: "unconfirmed",
        error: unconfirmed(link, spec, `failed to activate, and its watchdog has ${restoredTo(spec)}`),
      };
  }
  const why = `${spec.program} ${spec.action} exited ${failure.exitCode}${lastLine(failure.output) ? ` (${lastLine(failure.output)})` : ""}`;
  const r = await runOnTarget(link, restoreArgv(dir, spec), {
    reject: false,
    timeout: spec.activationLimitSeconds * 1000,
    ...signal,
  });
  if (r.exitCode !== 0) {
    throw new NixpoolError(
      "DEPLOY_RESTORE_FAILED",
      `Activation failed on target ${t.name} (${why}), and restoring the previous system failed too (exit ${r.exitCode}: ${lastLine(r.stderr)}).`,
      {
        hint: `Log in to ${t.name} and activate a working generation by hand: nix-env -p ${spec.profile} --list-generations`,
        details: { target: t.name, activationLog: failure.output.trim().split("\n").slice(-10).join("\n") },
      },
    );
  }
  return {
    status: "rolled-back",
    error: new NixpoolError(
      "DEPLOY_ACTIVATION_FAILED",
      `Activation failed on target ${t.name} (${why}); ${restoredTo(spec)}.`,
      {
        hint: `Read the activation's output above; fix the system and deploy again, or see: nixpool deploy --generations --target ${t.name}`,
        details: {
          target: t.name,
          restoredGeneration: spec.restore.generation ?? null,
          activationLog: failure.output.trim().split("\n").slice(-10).join("\n"),
        },
      },
    ),
  };
}
