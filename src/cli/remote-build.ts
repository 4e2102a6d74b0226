import { trapSignals } from "../adapters/signals.js";
import type { DerivationRecord } from "../core/build-record.js";
import type { DispatcherChoice } from "../core/dispatch/choose-dispatcher.js";
import { ERROR_CODES, ExitCode, NixpoolError, type ErrorCode } from "../core/errors.js";
import { evaluateDerivations, type EvaluatedRoot, type EvaluateRequest } from "../dispatch/evaluate.js";
import { downloadOutputs, uploadDerivations } from "../serve/client/store-transfer.js";
import { outLinkStyle } from "../core/installable.js";
import { createOutLinks, outLinkNames } from "../dispatch/out-links.js";
import type { DispatchResult } from "../dispatch/run-dispatch.js";
import type { CoordinatorClient } from "../serve/client/coordinator-client.js";
import {
  CoordinatorFailover,
  type FollowedBuild,
  type PrepareRequest,
} from "../serve/client/coordinator-failover.js";
import type { ClientBuildDetail } from "../serve/client/coordinator-responses.js";
import type { Context } from "./context.js";
import { dispatchJson, printDispatchReport, progressPrinter, writeTimeline } from "./dispatch-output.js";

export interface RemoteBuildOptions extends FollowDisplay {
  /** What to evaluate here (this machine shares the coordinator's store). */
  source: Omit<EvaluateRequest, "signal">;
  /** The build's name in the coordinator's history and dashboard. */
  label: string;
  outLink: string | null;
  keepGoing: boolean;
  copyBack: "needed" | "all";
  builders: string[];
  tags: string[];
  timeline: string | undefined;
}

/** After Ctrl-C, how long the client waits for the coordinator to confirm the cancellation. */
const CANCEL_WAIT_MS = 15_000;

/** How a followed remote build is shown: the live status, -L logs, or nothing (--json, --quiet). */
export interface FollowDisplay {
  json: boolean;
  quiet: boolean;
  printLogs: boolean;
}

/**
 * Submits a build to the first of `clients` (coordinators) that answers and follows its event
 * stream with the live status a local build shows, until it ends, on the others if its stream
 * breaks (CoordinatorFailover); returns its detail, whatever its status, and the coordinator that
 * sent the end. `prepare` makes the request for a coordinator (uploading what its store lacks)
 * under the same Ctrl-C handling: Ctrl-C before the build is named stops here, after it cancels
 * this build only (and waits for the coordinator to confirm).
 */
export async function followRemoteBuild(
  ctx: Context,
  clients: readonly CoordinatorClient[],
  display: FollowDisplay,
  prepare: PrepareRequest,
): Promise<FollowedBuild> {
  const controller = new AbortController();
  const untrap = trapSignals(controller);
  const showProgress = !display.json && !display.quiet;
  const progress =
    showProgress || display.printLogs ? progressPrinter(ctx, display.printLogs, showProgress) : undefined;
  const reading = new AbortController();
  let cancelling: Promise<void> | undefined;
  const failover = new CoordinatorFailover(clients, {
    say: (line) => ctx.output.err(line),
    onEvent: (e, from) => {
      if (e.type === "submitted") {
        if (showProgress) ctx.output.err(`build ${e.id} submitted to the coordinator at ${from.name}`);
        if (controller.signal.aborted) cancel();
      } else if (e.type === "dispatch") progress?.onEvent(e.event);
    },
  });
  const cancel = () => {
    const own = failover.id;
    if (own === undefined || cancelling) return;
    cancelling = failover.cancel().catch((e: unknown) => {
      ctx.output.err(`could not cancel build ${own}: ${e instanceof Error ? e.message : String(e)}`);
    });
    setTimeout(() => reading.abort(), CANCEL_WAIT_MS).unref();
  };
  controller.signal.addEventListener("abort", () => {
    if (failover.id === undefined) reading.abort();
    else cancel();
  });
  try {
    const followed = await failover.run(prepare, controller.signal, reading.signal);
    progress?.close();
    await cancelling;
    if (controller.signal.aborted) throw interrupted();
    return followed;
  } finally {
    progress?.close();
    untrap();
  }
}

/**
 * `nixpool build` through coordinators: evaluates here (once), submits to the first that answers
 * (uploading what its store lacks), follows the build (followRemoteBuild), then downloads the
 * outputs from the coordinator that sent the end, makes the out-link and prints the same report
 * (--json: the same shape, plus the build id). Ctrl-C cancels this build only.
 */
export async function runRemoteBuild(
  ctx: Context,
  clients: readonly CoordinatorClient[],
  o: RemoteBuildOptions,
): Promise<void> {
  let evaluated: EvaluatedRoot[] | undefined;
  const { detail, client } = await followRemoteBuild(ctx, clients, o, async (to, signal) => {
    evaluated ??= await evaluateDerivations({ ...o.source, signal });
    await uploadFor(ctx, to, evaluated, o, signal);
    return {
      derivations: evaluated.map((r) => ({ drv: r.drv, output: r.output })),
      label: o.label,
      keepGoing: o.keepGoing,
      copyBack: o.copyBack,
      ...(o.builders.length ? { builders: o.builders } : {}),
      ...(o.tags.length ? { tags: o.tags } : {}),
    };
  });
  const roots = evaluated ?? [];
  const choice: DispatcherChoice = {
    kind: "nixpool",
    reason: `the coordinator at ${client.name}, build ${detail.id}`,
  };
  if (detail.status !== "succeeded") throw buildError(detail, client.name);
  if (detail.outputs.length !== roots.length) {
    throw new NixpoolError(
      "COORDINATOR_BAD_RESPONSE",
      `The coordinator at ${client.name} answered ${detail.outputs.length} outputs for ${roots.length} roots.`,
    );
  }
  // A client on another machine gets the outputs into its own store (one on the coordinator's has them).
  const down = await downloadOutputs(client, detail.outputs);
  if (down.paths && !o.json && !o.quiet)
    ctx.output.err(`downloaded ${down.paths} paths (${megabytes(down.bytes)}) from the coordinator`);
  if (o.outLink !== null) {
    const links = outLinkNames(
      o.outLink,
      roots.map((r, i) => ({ outputName: r.output, path: detail.outputs[i] ?? "" })),
      outLinkStyle(o.source.installables),
    );
    await createOutLinks(links);
  }
  const result = resultOf(detail, o.outLink);
  if (o.timeline) await writeTimeline(o.timeline, result, o.label);
  if (o.json) return ctx.output.json({ buildId: detail.id, ...dispatchJson(result, choice) });
  printDispatchReport(ctx, result, choice);
}

const megabytes = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/**
 * Sends the coordinator the derivations' closure its store lacks (a client on another machine);
 * nothing for a client that shares its store.
 */
export async function uploadFor(
  ctx: Context,
  client: CoordinatorClient,
  roots: readonly EvaluatedRoot[],
  display: FollowDisplay,
  signal: AbortSignal,
): Promise<void> {
  const up = await uploadDerivations(
    client,
    roots.map((r) => r.drv),
    signal,
  );
  if (up.paths && !display.json && !display.quiet)
    ctx.output.err(
      `uploaded ${up.paths} paths (${megabytes(up.bytes)}) to the coordinator at ${client.name}`,
    );
}

function interrupted(): NixpoolError {
  return new NixpoolError("INTERRUPTED", "The build was interrupted.", { exitCode: ExitCode.interrupted });
}

/** The build's own error (its code when nixpool knows it), else BUILD_FAILED. */
export function buildError(d: ClientBuildDetail, where: string): NixpoolError {
  const code =
    d.error && (ERROR_CODES as readonly string[]).includes(d.error.code)
      ? (d.error.code as ErrorCode)
      : "BUILD_FAILED";
  const message =
    d.status === "cancelled"
      ? `Build ${d.id} was cancelled on the coordinator.`
      : (d.error?.message ?? `Build ${d.id} failed.`);
  return new NixpoolError(code, message, {
    hint: `Its derivations and logs: nixpool's dashboard, or GET /api/builds/${d.id} at ${where}.`,
    details: { buildId: d.id, status: d.status },
  });
}

/** A DispatchResult from the coordinator's report; without one, records made from the derivation list. */
function resultOf(d: ClientBuildDetail, outLink: string | null): DispatchResult {
  const report = d.report ?? {
    records: [] as DerivationRecord[],
    startedAtMs: 0,
    wallMs: 0,
    builders: [],
    stats: {
      evalMs: 0,
      connectMs: 0,
      pathsUploaded: 0,
      pathsDownloaded: 0,
      bytesUploaded: 0,
      bytesDownloaded: 0,
      derivationsInClosure: 0,
      cpuMs: 0,
      maxRssMb: 0,
    },
  };
  // Every root's output is in this machine's store by now: the coordinator copied it into its own
  // store before it called the build done, and runRemoteBuild downloaded what this store lacked.
  return { ...report, outputs: d.outputs, holders: d.outputs.map(() => ["local"]), outLink };
}
