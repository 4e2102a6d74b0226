import { ServeSession } from "../adapters/nix-serve-session.js";
import { run } from "../adapters/runner.js";
import type { Builder } from "../core/builder.js";
import { planClosureCopy, type ClosureCopyPlan } from "../core/deploy/closure-plan.js";
import { renderBuilderPushCommand } from "../core/deploy/target-ssh-argv.js";
import { NixpoolError } from "../core/errors.js";
import { classifySshFailure } from "../core/ssh-errors.js";
import {
  builderServeArgv,
  builderSshArgv,
  describeLoss,
  LOCAL_SERVE_ARGV,
} from "../dispatch/serve-sessions.js";
import { transferPaths } from "../adapters/nix-serve-transfer.js";
import { startForwardedAgent } from "./forwarded-agent.js";
import { openTargetServe, type TargetLink } from "./target-ssh.js";

/** Where a closure is copied from: this machine's store, or a builder through nixpool's ssh_config. */
export type CopySource = { kind: "local" } | { kind: "builder"; builder: Builder; sshConfig: string };

/** How the bytes travel: builder → target directly, or through this machine (two sessions, piped). */
export type CopyRoute = "direct" | "via-here";

export interface CopyClosureRequest {
  /** Store paths whose closure the target must hold. */
  paths: readonly string[];
  from: CopySource;
  to: TargetLink;
  /** "auto" (default): direct from a builder, else (or when it fails) through this machine. */
  route?: "auto" | CopyRoute;
  signal?: AbortSignal;
  /** Milliseconds for the whole copy; default 30 minutes. */
  timeoutMs?: number;
}

export interface CopyClosureResult {
  route: CopyRoute;
  /** Paths in the closure. */
  closure: number;
  /** Paths sent (the target lacked them), references first. */
  sent: string[];
  /** Sum of the sent paths' NAR sizes. */
  narBytes: number;
  /** Why the direct route was not taken (or failed), when it was wanted. */
  fallback?: string;
  durationMs: number;
  /** Where the time went: opening both sessions, planning (closure, infos, what the target has), sending. */
  phases: { connectMs: number; planMs: number; sendMs: number };
}

function sourceName(from: CopySource): string {
  return from.kind === "local" ? "this machine" : `builder ${from.builder.name}`;
}

function openSource(from: CopySource, signal: AbortSignal | undefined): Promise<ServeSession> {
  return ServeSession.open({
    argv: from.kind === "local" ? LOCAL_SERVE_ARGV : builderServeArgv(from.builder, from.sshConfig),
    name: sourceName(from),
    ...(signal ? { signal } : {}),
  });
}

/** The plan for what the target still lacks (locking what it holds against its garbage collector). */
async function planFor(source: ServeSession, target: ServeSession, roots: readonly string[]) {
  const closure = await source.queryClosure(roots, false);
  const infos = await source.queryPathInfos(closure);
  const valid = await target.queryValidPaths(closure, { lock: true });
  return planClosureCopy(infos, valid);
}

/**
 * Copies the closure of `paths` to a target, sending only what it lacks, references first:
 * directly from a builder when the target accepts that builder's login (through an agent of
 * nixpool's own holding only the target's key), else through this machine with no temporary
 * file. The target's pinned key is checked from here before anything is sent.
 */
export async function copyClosure(req: CopyClosureRequest): Promise<CopyClosureResult> {
  const started = Date.now();
  const t = req.to.target;
  const signal = req.signal;
  // Both sessions open at once; the target's pinned key is checked before anything is sent.
  const [targetOpen, sourceOpen] = await Promise.allSettled([
    openTargetServe(req.to, signal ? { signal } : {}),
    openSource(req.from, signal),
  ]);
  if (targetOpen.status === "rejected" || sourceOpen.status === "rejected") {
    const opened = [targetOpen, sourceOpen].flatMap((o) => (o.status === "fulfilled" ? [o.value] : []));
    await Promise.allSettled(opened.map((s) => s.close()));
    throw targetOpen.status === "rejected" ? targetOpen.reason : (sourceOpen as PromiseRejectedResult).reason;
  }
  const target = targetOpen.value;
  const source = sourceOpen.value;
  try {
    const valid = await source.queryValidPaths(req.paths);
    const absent = req.paths.filter((p) => !valid.includes(p));
    if (absent.length > 0) {
      throw new NixpoolError(
        "COPY_SOURCE_MISSING",
        `${sourceName(req.from)} does not hold ${absent[0]}${absent.length > 1 ? ` (and ${absent.length - 1} more)` : ""}, so it cannot be copied to target ${t.name}.`,
        { hint: "Build it there first (nixpool build …), or copy from where it was built." },
      );
    }
    const connected = Date.now();
    let plan = await planFor(source, target, req.paths);
    const planned = Date.now();
    const done = (route: CopyRoute, sent: ClosureCopyPlan, fallback?: string): CopyClosureResult => ({
      route,
      closure: sent.closure,
      sent: sent.missing,
      narBytes: sent.narBytes,
      ...(fallback !== undefined ? { fallback } : {}),
      durationMs: Date.now() - started,
      phases: { connectMs: connected - started, planMs: planned - connected, sendMs: Date.now() - planned },
    });
    const wanted = req.route ?? "auto";
    let fallback: string | undefined;
    if (wanted !== "via-here") {
      const why = directUnavailable(req);
      if (why === undefined && plan.missing.length > 0 && req.from.kind === "builder") {
        const failed = await pushDirect(req.from, req.to, plan.missing, req);
        const now = await target.queryValidPaths(plan.missing);
        if (failed === undefined && now.length === plan.missing.length) return done("direct", plan);
        fallback =
          failed ??
          `builder ${req.from.builder.name} reported success, but target ${t.name} lacks ${plan.missing.length - now.length} paths`;
        if (wanted === "direct") throw directFailed(req, fallback);
        // Whatever arrived before the failure stays; send only the rest.
        const before = plan;
        plan = await planFor(source, target, req.paths);
        plan = { ...plan, closure: before.closure };
      } else if (why !== undefined) {
        if (wanted === "direct") throw directFailed(req, why);
        fallback = why;
      } else if (plan.missing.length === 0) {
        return done(req.from.kind === "builder" ? "direct" : "via-here", plan);
      }
    }
    if (plan.missing.length > 0)
      await transferPaths(source, target, plan.missing, { timeoutMs: req.timeoutMs ?? 30 * 60_000 });
    return done("via-here", plan, fallback);
  } finally {
    await Promise.allSettled([source.close(), target.close()]);
  }
}

/** Why the direct route cannot even be tried, or undefined. */
function directUnavailable(req: CopyClosureRequest): string | undefined {
  if (req.from.kind === "local") return "the closure is on this machine";
  if (req.to.target.identityFile === undefined)
    return `target ${req.to.target.name} has no identityFile to lend builder ${req.from.builder.name}`;
  return undefined;
}

function directFailed(req: CopyClosureRequest, why: string): NixpoolError {
  return new NixpoolError(
    "COPY_DIRECT_FAILED",
    `The direct copy to target ${req.to.target.name} from ${sourceName(req.from)} failed: ${why}.`,
    { hint: "Copy through this machine instead (route via-here), or let the builder reach the target." },
  );
}

/** Runs the push on the builder; undefined when it succeeded, else why it failed (one clause). */
async function pushDirect(
  from: Extract<CopySource, { kind: "builder" }>,
  to: TargetLink,
  paths: readonly string[],
  req: CopyClosureRequest,
): Promise<string | undefined> {
  const t = to.target;
  let agent;
  try {
    agent = await startForwardedAgent(t.identityFile ?? "");
  } catch (e) {
    return `nixpool could not lend the key ${t.identityFile ?? ""} through an agent (${(e as Error).message})`;
  }
  try {
    const argv = builderSshArgv(
      from.builder,
      from.sshConfig,
      ["-o", `ForwardAgent=${agent.socket}`],
      [renderBuilderPushCommand(t, paths)],
    );
    // The agent reaches ssh through its environment (ForwardAgent=PATH is not honoured on the command line here).
    const r = await run(argv, {
      env: { SSH_AUTH_SOCK: agent.socket },
      reject: false,
      timeout: req.timeoutMs ?? 30 * 60_000,
      ...(req.signal ? { signal: req.signal } : {}),
    });
    if (r.exitCode === 0) return undefined;
    const stderr = r.stderr.trim();
    const ssh = r.exitCode === 255 ? classifySshFailure(stderr) : "unknown";
    const tail = stderr.split("\n").slice(-2).join(" / ");
    return ssh !== "unknown"
      ? `${describeLoss({ sshFailure: ssh, stderrTail: [], message: "" })} (${tail})`
      : `exit ${r.exitCode}${tail ? `: ${tail}` : ""}`;
  } finally {
    await agent.stop();
  }
}
