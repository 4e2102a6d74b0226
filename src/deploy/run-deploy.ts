import { join } from "node:path";
import { statePaths } from "../config/state-paths.js";
import type { Action } from "../core/deploy/deploy-options.js";
import { outcomeError, type TargetOutcome } from "../core/deploy/deploy-outcome.js";
import {
  currentGeneration,
  generationAfterSet,
  parseGenerations,
  rollbackGeneration,
  type Generation,
} from "../core/deploy/generations.js";
import { generationsArgv, type ActivationSpec, type ProfileChange } from "../core/deploy/remote-scripts.js";
import { pinnedHostKey, type DeployTarget } from "../core/deploy/target.js";
import { NixpoolError, isNixpoolError } from "../core/errors.js";
import { activateOnTarget, WATCHDOG_GRACE_SECONDS } from "./activation.js";
import { copyClosure, type CopyClosureResult } from "./closure-copy.js";
import { keepGcRoot } from "./gc-root.js";
import type { BuiltSystem } from "./system-build.js";
import { runOnTarget, writeTargetKnownHosts, type TargetLink } from "./target-ssh.js";

/** How long the watchdog waits for an activation to end before it rolls back anyway. */
export const ACTIVATION_LIMIT_SECONDS = 600;

/** A progress line about one target. */
export type DeployProgress = (target: string, step: string) => void;

export interface DeployOptions {
  stateDir: string;
  action: Action;
  /** bin/switch-to-configuration, or what --activate names. */
  program: string;
  confirmMs: number;
  parallel: number;
  /** nixpool's ssh_config for builders (a system built on one is copied, and rooted, from there). */
  builderSshConfig?: string | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: DeployProgress;
}

/**
 * Links to the targets, each through a known_hosts holding only its pinned key (written first):
 * one file per target, so that a deploy to other targets running at the same time never
 * rewrites the file this one still reads (its fresh confirming connection comes last).
 */
export async function linkTargets(stateDir: string, targets: readonly DeployTarget[]): Promise<TargetLink[]> {
  const ssh = targets.map((t) => ({ ...t, hostKey: pinnedHostKey(t) }));
  const dir = `${statePaths(stateDir).deploy.knownHosts}.d`;
  return Promise.all(
    ssh.map(async (target) => ({
      target,
      knownHostsFile: await writeTargetKnownHosts(join(dir, target.name), [target]),
    })),
  );
}

/** The generations of a target's profile (its first connection: a host-key mismatch stops here). */
export async function listGenerations(
  link: TargetLink,
  profile: string,
  signal?: AbortSignal,
): Promise<Generation[]> {
  const r = await runOnTarget(link, generationsArgv(profile), {
    timeout: 60_000,
    ...(signal ? { signal } : {}),
  });
  return parseGenerations(r.stdout, link.target.name, profile);
}

/** Runs fn for every item, at most `limit` at once; results in the items' order. */
export async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function spec(
  o: DeployOptions,
  profile: string,
  system: string,
  change: ProfileChange,
  restore: ActivationSpec["restore"],
): ActivationSpec {
  return {
    profile,
    system,
    program: o.program,
    action: o.action,
    change,
    restore,
    confirmSeconds: Math.ceil(o.confirmMs / 1000) + WATCHDOG_GRACE_SECONDS,
    activationLimitSeconds: ACTIVATION_LIMIT_SECONDS,
  };
}

/** One target's deploy, never throwing: a failure is its outcome (the others carry on). */
export async function deployOne(
  t: DeployTarget,
  link: TargetLink,
  o: Pick<DeployOptions, "onProgress">,
  work: (progress: (step: string) => void) => Promise<Omit<TargetOutcome, "target" | "ms">>,
): Promise<TargetOutcome> {
  const t0 = Date.now();
  const progress = (step: string) => o.onProgress?.(t.name, step);
  try {
    return { target: t.name, ...(await work(progress)), ms: Date.now() - t0 };
  } catch (e) {
    if (!isNixpoolError(e)) throw e;
    progress(`failed (${e.code})`);
    return {
      target: t.name,
      status: "failed",
      generation: undefined,
      path: undefined,
      ms: Date.now() - t0,
      error: outcomeError(e),
    };
  }
}

/** The generation a profile change leaves current. */
function nextGeneration(
  gens: readonly Generation[],
  change: ProfileChange,
  path: string,
): number | undefined {
  if (change.kind === "set") return generationAfterSet(gens, path);
  if (change.kind === "switch") return change.generation;
  return currentGeneration(gens)?.number;
}

/**
 * Keeps a GC root of the system where it was built, then copies its closure to the target (only
 * what it lacks; from the builder directly when it can).
 */
export async function copySystem(
  system: BuiltSystem,
  t: DeployTarget,
  link: TargetLink,
  o: Pick<DeployOptions, "stateDir" | "builderSshConfig" | "signal">,
  progress: (step: string) => void,
): Promise<CopyClosureResult> {
  progress("keeping a GC root where it was built");
  await keepGcRoot(system.place, t.name, system.path, {
    stateDir: o.stateDir,
    sshConfig: o.builderSshConfig,
    signal: o.signal,
  });
  progress("copying the closure");
  const copy = await copyClosure({
    from:
      system.place.kind === "local"
        ? { kind: "local" }
        : {
            kind: "builder",
            builder: system.place.builder,
            sshConfig: o.builderSshConfig ?? "/dev/null",
          },
    to: link,
    paths: [system.path],
    ...(o.signal ? { signal: o.signal } : {}),
  });
  progress(
    `copied ${copy.sent.length} of ${copy.closure} paths (${copy.route === "direct" ? "directly from the builder" : "through this machine"}${copy.fallback ? `: ${copy.fallback}` : ""})`,
  );
  return copy;
}

/** Deploys a built system to every target (bounded parallelism); one failing does not stop the others. */
export async function deploySystem(
  system: BuiltSystem,
  targets: readonly DeployTarget[],
  o: DeployOptions,
): Promise<TargetOutcome[]> {
  const links = await linkTargets(o.stateDir, targets);
  const changesProfile = o.action === "switch" || o.action === "boot";
  return mapBounded(targets, o.parallel, (t) => {
    const link = links[targets.indexOf(t)] as TargetLink;
    return deployOne(t, link, o, async (progress) => {
      progress("connecting");
      const gens = await listGenerations(link, t.profile, o.signal);
      const cur = currentGeneration(gens);
      const copy = await copySystem(system, t, link, o, progress);
      const change: ProfileChange = changesProfile ? { kind: "set" } : { kind: "none" };
      const s = spec(o, t.profile, system.path, change, {
        generation: changesProfile ? cur?.number : undefined,
        path: cur?.path,
      });
      const end = await activateOnTarget(link, s, {
        confirmMs: o.confirmMs,
        signal: o.signal,
        onStep: progress,
      });
      const generation = end.status === "activated" ? nextGeneration(gens, change, system.path) : cur?.number;
      progress(
        end.status === "activated"
          ? `activated${generation ? ` generation ${generation}` : ""}`
          : end.error.message,
      );
      return {
        status: end.status,
        generation,
        path: system.path,
        copied: copy.sent.length,
        route: copy.route,
        ...(end.status === "activated" ? {} : { error: outcomeError(end.error) }),
      };
    });
  });
}

/** `deploy --rollback`: the generation before the current one, activated with the same safety. */
export async function rollbackTargets(
  targets: readonly DeployTarget[],
  o: DeployOptions,
): Promise<TargetOutcome[]> {
  const links = await linkTargets(o.stateDir, targets);
  return mapBounded(targets, o.parallel, (t) => {
    const link = links[targets.indexOf(t)] as TargetLink;
    return deployOne(t, link, o, async (progress) => {
      progress("connecting");
      const gens = await listGenerations(link, t.profile, o.signal);
      const cur = currentGeneration(gens);
      const prev = rollbackGeneration(gens);
      if (!cur || !prev) {
        throw new NixpoolError(
          "DEPLOY_NO_PREVIOUS_GENERATION",
          `Target ${t.name} has no generation of ${t.profile} older than the current one${cur ? ` (${cur.number})` : ""} to roll back to.`,
          { hint: `See its generations with: nixpool deploy --generations --target ${t.name}` },
        );
      }
      const s = spec(
        o,
        t.profile,
        prev.path,
        { kind: "switch", generation: prev.number },
        {
          generation: cur.number,
          path: cur.path,
        },
      );
      const end = await activateOnTarget(link, s, {
        confirmMs: o.confirmMs,
        signal: o.signal,
        onStep: progress,
      });
      progress(
        end.status === "activated"
          ? `rolled back to generation ${prev.number}`
          : `${end.status} (${end.error.code})`,
      );
      return {
        status: end.status,
        generation: end.status === "activated" ? prev.number : cur.number,
        path: prev.path,
        ...(end.status === "activated" ? {} : { error: outcomeError(end.error) }),
      };
    });
  });
}
