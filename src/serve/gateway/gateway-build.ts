import { derivationName } from "../../core/derivation.js";
import { isNixpoolError } from "../../core/errors.js";
import {
  BUILD_STATUS_NAMES,
  buildStatusName,
  builtOutputsOf,
  type BasicDerivation,
  type BuildOptions,
  type BuildResult,
} from "../../core/nix-serve/index.js";
import type { CoordinatorClient } from "../client/coordinator-client.js";
import { CoordinatorFailover } from "../client/coordinator-failover.js";
import type { ClientBuildDetail, StreamEvent } from "../client/coordinator-responses.js";
import { toGivenJson } from "../given-derivation.js";

/** What a gateway session asks of the pool for one BuildDerivation. */
export interface GatewayBuilds {
  build(
    drvPath: string,
    drv: BasicDerivation,
    options: BuildOptions,
    onLog: (line: string) => void,
    /** Aborted when the client went away: the build is cancelled. */
    signal?: AbortSignal,
  ): Promise<BuildResult>;
}

/** Log lines kept for the error message of a failed build (Nix's own `log-lines` default). */
const TAIL_LINES = 10;

/**
 * BuildDerivation as a build on the coordinator's queue: submitted for the client with the
 * derivation given by value, its log lines passed on as they come, the client's maxSilentTime and
 * buildTimeout enforced here (Nix does not enforce them for remote builds), and the outcome
 * mapped to Nix's BuildResult.
 */
export class CoordinatorBuilds implements GatewayBuilds {
  /** Several coordinators (sharing this machine's store): a build is followed on the next when one is lost. */
  private readonly others: readonly CoordinatorClient[];

  constructor(
    private readonly coordinator: CoordinatorClient,
    private readonly client: string,
    private readonly clock: () => number = Date.now,
    others: readonly CoordinatorClient[] = [],
  ) {
    this.others = others;
  }

  async build(
    drvPath: string,
    drv: BasicDerivation,
    options: BuildOptions,
    onLog: (line: string) => void,
    signal?: AbortSignal,
  ): Promise<BuildResult> {
    const output = drv.outputs.has("out") ? "out" : ([...drv.outputs.keys()][0] ?? "out");
    const startMs = this.clock();
    const tail: string[] = [];
    let id: string | undefined;
    let timedOut: string | undefined;
    let silence: NodeJS.Timeout | undefined;
    const stop = (why: string) => {
      if (timedOut !== undefined) return;
      timedOut = why;
      if (id !== undefined) void cancel(id);
    };
    const armSilence = () => {
      if (options.maxSilentTime <= 0) return;
      if (silence) clearTimeout(silence);
      silence = setTimeout(
        () => stop(`building of '${drvPath}' timed out after ${options.maxSilentTime} seconds of silence`),
        options.maxSilentTime * 1000,
      );
    };
    // Both clocks run from the build's start on a builder (again on a retry's), as Nix's do for a
    // local build: a wait for a slot behind other clients' builds is neither silence nor build time.
    let overall: NodeJS.Timeout | undefined;
    const armOverall = () => {
      if (options.buildTimeout <= 0) return;
      if (overall) clearTimeout(overall);
      overall = setTimeout(
        () => stop(`building of '${drvPath}' timed out after ${options.buildTimeout} seconds`),
        options.buildTimeout * 1000,
      );
    };
    let failover: CoordinatorFailover | undefined;
    const cancel = (buildId: string) =>
      (failover ? failover.cancel() : this.coordinator.cancel(buildId)).catch(() => undefined);
    const onAbort = () => stop(`the client of '${drvPath}' went away`);
    signal?.addEventListener("abort", onAbort);
    let detail: ClientBuildDetail | undefined;
    let failure: string | undefined;
    const request = {
      derivations: [{ drv: drvPath, output, given: toGivenJson(drv) }],
      label: `gateway ${this.client}: ${derivationName(drvPath)}`,
      onBehalfOf: this.client,
      // The outputs stay on the builder: the client's QueryPathInfos and DumpStorePath read them there.
      copyBack: "none" as const,
    };
    try {
      const onEvent = (e: StreamEvent) => {
        if (e.type === "submitted") {
          id = e.id;
          if (timedOut !== undefined) void cancel(id);
        } else if (e.type === "dispatch" && e.event.kind === "start" && e.event.drv === drvPath) {
          armOverall();
          armSilence();
        } else if (e.type === "dispatch" && e.event.kind === "log") {
          armSilence();
          tail.push(e.event.line);
          if (tail.length > TAIL_LINES) tail.shift();
          onLog(e.event.line);
        }
      };
      if (this.others.length === 0) {
        detail = await this.coordinator.submit(request, onEvent);
      } else {
        // Several coordinators sharing this machine's store: one lost mid-build, the build is
        // followed (same id) on another, which adopts it; the client's Nix never learns.
        failover = new CoordinatorFailover([this.coordinator, ...this.others], {
          say: (line) => onLog(`nixpool gateway: ${line}`),
          onEvent,
        });
        const never = new AbortController().signal;
        detail = (await failover.run(() => Promise.resolve(request), never, never)).detail;
      }
    } catch (e) {
      failure = isNixpoolError(e) ? `${e.message} (${e.code})` : e instanceof Error ? e.message : String(e);
    } finally {
      if (silence) clearTimeout(silence);
      if (overall) clearTimeout(overall);
      signal?.removeEventListener("abort", onAbort);
    }
    return mapBuildResult({ drvPath, drv, detail, failure, timedOut, tail, startMs, stopMs: this.clock() });
  }
}

/** The outcome of one gateway build, as BuildResult numbers Nix understands. */
export function mapBuildResult(o: {
  drvPath: string;
  /** The derivation the client sent: a success reports its DrvOutputs as a builder would. */
  drv?: BasicDerivation;
  detail: ClientBuildDetail | undefined;
  failure: string | undefined;
  timedOut: string | undefined;
  tail: readonly string[];
  startMs: number;
  stopMs: number;
}): BuildResult {
  const rec = o.detail?.report?.records.find((r) => r.drv === o.drvPath);
  // A record's times count from the build's start (report.startedAtMs).
  const t0 = o.detail?.report?.startedAtMs ?? 0;
  const at = (ms: number | null | undefined, fallback: number) =>
    Math.floor((ms != null ? t0 + ms : fallback) / 1000);
  const startTime = at(rec?.startedMs, o.startMs);
  const stopTime = at(rec?.finishedMs, o.stopMs);
  const result = (status: number, errorMsg: string, timesBuilt = 0): BuildResult => ({
    status,
    statusName: buildStatusName(status),
    errorMsg,
    timesBuilt,
    isNonDeterministic: false,
    startTime,
    stopTime,
    // Nix 2.8's nix-store --serve reports every output of a success (Built or AlreadyValid), none of a failure.
    builtOutputs: o.drv && errorMsg === "" ? builtOutputsOf(o.drv) : [],
  });
  const withTail = (msg: string) =>
    o.tail.length
      ? `${msg}\nlast ${o.tail.length} log lines:\n${o.tail.map((l) => `> ${l}`).join("\n")}`
      : msg;
  if (o.timedOut !== undefined) return result(statusNumber("TimedOut"), o.timedOut);
  if (o.detail?.status === "succeeded") {
    return rec?.status === "cached"
      ? result(statusNumber("AlreadyValid"), "")
      : result(statusNumber("Built"), "", 1);
  }
  if (rec?.status === "failed" && rec.error) {
    // The dispatcher records a builder's failure as "<Status> on <builder>: <last line>".
    const named = /^([A-Za-z]+) on /.exec(rec.error)?.[1];
    const status = named !== undefined && named in STATUS ? STATUS[named]! : statusNumber("PermanentFailure");
    return result(status, withTail(`builder for '${o.drvPath}' failed in the pool: ${rec.error}`));
  }
  const why = o.detail?.error
    ? `${o.detail.error.message} (${o.detail.error.code})`
    : (o.failure ?? "the build ended");
  // Lost builders, a stopping coordinator, a refused request: nothing the derivation did.
  return result(statusNumber("MiscFailure"), withTail(`the pool could not build '${o.drvPath}': ${why}`));
}

const STATUS: Record<string, number> = Object.fromEntries(BUILD_STATUS_NAMES.map((n, i) => [n, i]));

function statusNumber(name: (typeof BUILD_STATUS_NAMES)[number]): number {
  return STATUS[name]!;
}
