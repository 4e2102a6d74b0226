import type { RegisterCommands } from "../cli/commands.js";
import type { Context } from "../cli/context.js";
import { trapSignals } from "../adapters/signals.js";
import { formatSeconds, renderTable } from "../cli/output.js";
import { sanitizeTerminalLine } from "../cli/build-status.js";
import { ExitCode, NixpoolError } from "../core/errors.js";
import { probeStoreFacts } from "../adapters/nix-store-probe.js";
import { isDaemonBuilding } from "../core/nix-store-kind.js";
import { runNixBuild, type BuildProgress, type NixBuildResult } from "../adapters/nix-build.js";
import {
  addInstallableOptions,
  fileOptionsOf,
  flakeOptionsOf,
  type InstallableFlags,
} from "../cli/nix-args.js";
import { installablesLabel, outLinkStyle, type NixArg } from "../core/installable.js";
import { readInstallables } from "../dispatch/installables.js";
import { evaluateDerivations, type EvaluatedRoot, type EvaluateRequest } from "../dispatch/evaluate.js";
import { createOutLinks, outLinkNames } from "../dispatch/out-links.js";
import type { Builder } from "../core/builder.js";
import { chooseDispatcher, type DispatcherChoice } from "../core/dispatch/choose-dispatcher.js";
import { buildOnWorker } from "../providers/hetzner/rent.js";
import { dispatchBuild } from "../dispatch/dispatch-build.js";
import { buildTrustPolicy, refuseTrustUnderHook, type TrustFlags } from "../cli/trust-options.js";
import { runRemoteBuild } from "../cli/remote-build.js";
import { CoordinatorClient } from "../serve/client/coordinator-client.js";
import { findCoordinators } from "../serve/client/coordinator-target.js";
import { dispatchJson, printDispatchReport, progressPrinter, writeTimeline } from "../cli/dispatch-output.js";

function collectName(value: string, acc: string[]): string[] {
  return [...acc, value];
}

/** The builders named with --builder (all when none), narrowed to those carrying every --tag. */
async function selectBuilders(ctx: Context, names: string[], tags: string[]): Promise<Builder[]> {
  const chosen = (await ctx.selectBuilders(names)).filter((b) => tags.every((t) => b.tags.includes(t)));
  if (chosen.length === 0 && tags.length > 0) {
    throw new NixpoolError(
      "NO_BUILDERS",
      `No builder carries the tag${tags.length > 1 ? "s" : ""} ${tags.join(", ")}.`,
      {
        hint: "List the builders and their tags with: nixpool builders --json",
        exitCode: ExitCode.usage,
      },
    );
  }
  return chosen;
}

/** The table of which builder built what, then the outputs. */
export function renderBuildReport(r: NixBuildResult, dispatcher?: DispatcherChoice): string {
  const rows = r.derivations.map((d) => [
    d.name,
    d.builder,
    d.durationMs === null ? "-" : formatSeconds(d.durationMs),
  ]);
  const parts = [
    rows.length
      ? renderTable(["DERIVATION", "BUILDER", "TIME"], rows)
      : "Nothing to build: every output was already in the local store.",
    "",
    `Built ${r.derivations.length} derivations in ${formatSeconds(r.wallMs)}${dispatcher ? ` (${dispatcher.reason})` : ""}. Outputs${r.outLink ? ` (GC root ${r.outLink})` : ""}:`,
    ...r.outputs.map((o) => `  ${o}`),
  ];
  return parts.join("\n");
}

interface BuildFlags extends TrustFlags, InstallableFlags {
  outLink: string | false;
  json?: boolean;
  quiet?: boolean;
  printBuildLogs?: boolean;
  on?: string;
  builder: string[];
  tag: string[];
  dispatcher?: string;
  keepGoing?: boolean;
  /** A URL, false for --no-coordinator, undefined: NIXPOOL_COORDINATOR or this state directory's serve. */
  coordinator?: string | false;
  copyBack?: string;
  timeline?: string;
}

function parseCopyBack(v: string | undefined): "needed" | "all" {
  if (v === undefined || v === "needed" || v === "all") return v ?? "needed";
  throw new NixpoolError("USAGE", `--copy-back must be "needed" or "all" (got "${v}").`, {
    hint: "For example: nixpool build FILE.nix --copy-back all",
    exitCode: ExitCode.usage,
  });
}

/** nixpool build INSTALLABLE…: offloads a real Nix build to the pool's builders. */
export const registerBuild: RegisterCommands = (program, context) => {
  const cmd = program
    .command("build")
    .description("build flake outputs or Nix files on the pool's builders and copy the results back")
    .argument(
      "<installables...>",
      "flake outputs (.#hello, DIR#pkg, path:/abs#x, . for the default package, .#checks.x86_64-linux for a set) or Nix files (FILE.nix with -A)",
    );
  addInstallableOptions(cmd, "--system aarch64-linux")
    .option("-o, --out-link <path>", "GC root for the result", "result")
    .option("--no-out-link", "do not create a GC root for the result")
    .option("--builder <name>", "offload only to this builder (repeatable)", collectName, [])
    .option("--tag <tag>", "offload only to builders with this tag (repeatable)", collectName, [])
    .option("--on <place>", "rent a worker for this build and delete it after: hetzner[:TYPE]")
    .option("--dispatcher <kind>", "nixpool (default: nixpool's own dispatcher) or hook (Nix's build hook)")
    .option("-k, --keep-going", "after a failure, build everything that does not depend on it")
    .option("--copy-back <what>", "outputs copied here: needed (what you asked for; default) or all")
    .option("--trusted-only", "build every derivation on trusted builders only (docs/trust.md)")
    .option("--verify <n>", "build each derivation on N distinct builders and compare the outputs")
    .option(
      "--verify-only <glob>",
      "verify only derivations whose name matches (repeatable; --verify defaults to 2)",
      collectName,
      [],
    )
    .option("--timeline <file.svg>", "draw the build as a Gantt chart (one row per builder slot)")
    .option(
      "--coordinator <url>",
      "build through a coordinator: unix:/path/api.sock or http://HOST:PORT, or several: URL1,URL2",
    )
    .option("--no-coordinator", "build here even if a nixpool serve runs on this state directory")
    .option("--json", "print JSON")
    .option("--quiet", "no progress lines")
    .option(
      "-L, --print-build-logs",
      "print the builders' build logs, each line prefixed with its derivation",
    )
    .action(async (words: string[], opts: BuildFlags) => {
      const ctx = context();
      const copyBack = parseCopyBack(opts.copyBack);
      const flake = flakeOptionsOf(opts);
      const installables = await readInstallables(words, fileOptionsOf(opts), flake);
      const label = installablesLabel(installables);
      const onWarning = opts.quiet ? undefined : (m: string) => ctx.output.err(m);
      const clients = await coordinatorsFor(ctx, opts);
      if (clients) {
        return runRemoteBuild(ctx, clients, {
          source: { installables, flake, onWarning },
          label,
          outLink: opts.outLink === false ? null : opts.outLink,
          keepGoing: opts.keepGoing === true,
          copyBack,
          builders: opts.builder,
          tags: opts.tag,
          json: opts.json === true,
          quiet: opts.quiet === true,
          printLogs: opts.printBuildLogs === true,
          timeline: opts.timeline,
        });
      }
      const trust = buildTrustPolicy((await ctx.loadInventory()).policy, opts);
      const uid = process.getuid?.() ?? 0;
      // Root writes the store whoever serves it: no need to ask Nix (nix show-config) which store that is.
      const daemonOwnsStore = uid !== 0 && isDaemonBuilding(await probeStoreFacts(process.env));
      const choice = chooseDispatcher(opts.dispatcher, daemonOwnsStore, uid);
      const controller = new AbortController();
      const untrap = trapSignals(controller);
      const outLink = opts.outLink === false ? null : opts.outLink;
      const showProgress = !opts.json && !opts.quiet;
      const progress =
        showProgress || opts.printBuildLogs
          ? progressPrinter(ctx, opts.printBuildLogs === true, showProgress)
          : undefined;
      try {
        if (choice.kind === "nixpool") {
          const exec = (builders: Builder[], signal: AbortSignal) =>
            dispatchBuild({
              builders,
              stateDir: ctx.stateDir,
              source: { installables, flake, onWarning },
              outLink,
              signal,
              keepGoing: opts.keepGoing === true,
              copyBack,
              trust,
              ...backoffFromEnv(),
              ...(progress ? { onEvent: progress.onEvent } : {}),
            });
          const { result, worker } = opts.on
            ? await buildOnWorker(ctx, opts.on, exec)
            : {
                result: await exec(await selectBuilders(ctx, opts.builder, opts.tag), controller.signal),
                worker: undefined,
              };
          progress?.close();
          if (opts.timeline) await writeTimeline(opts.timeline, result, label);
          if (opts.json)
            return ctx.output.json({ ...dispatchJson(result, choice), ...(worker ? { worker } : {}) });
          printDispatchReport(ctx, result, choice);
          return;
        }
        if (opts.timeline) {
          throw new NixpoolError("USAGE", "--timeline needs nixpool's own dispatcher.", {
            hint: "Drop --dispatcher hook to draw the timeline.",
            exitCode: ExitCode.usage,
          });
        }
        const exec = async (builders: Builder[], signal: AbortSignal) => {
          refuseTrustUnderHook(trust, builders);
          const target = await hookTarget({ installables, flake, signal, onWarning });
          const built = await runNixBuild({
            builders,
            stateDir: ctx.stateDir,
            ...target,
            outLink: target.roots ? null : outLink,
            signal,
            ...(opts.json || opts.quiet
              ? {}
              : {
                  onProgress: (e: BuildProgress) => {
                    // Nix stops every activity as it unwinds after a signal: those are not builds.
                    if (controller.signal.aborted) return;
                    if (e.kind === "log") {
                      if (opts.printBuildLogs) ctx.output.err(sanitizeTerminalLine(`${e.name}> ${e.line}`));
                    } else
                      ctx.output.err(
                        `${e.kind === "start" ? "building" : "built   "} ${e.name} on ${e.builder}`,
                      );
                  },
                }),
          });
          // Evaluated here (flakes): the out-links are named as nix build names them.
          if (!target.roots || outLink === null) return built;
          const links = outLinkNames(
            outLink,
            target.roots.map((r, i) => ({ outputName: r.output, path: built.outputs[i] ?? "" })),
            outLinkStyle(installables),
          );
          await createOutLinks(links, signal);
          return { ...built, outLink };
        };
        // --on: a rented worker is the only builder, deleted afterwards (see src/commands/worker.ts).
        const { result, worker } = opts.on
          ? await buildOnWorker(ctx, opts.on, exec)
          : {
              result: await exec(await selectBuilders(ctx, opts.builder, opts.tag), controller.signal),
              worker: undefined,
            };
        if (opts.json)
          return ctx.output.json({ ...result, dispatcher: choice, ...(worker ? { worker } : {}) });
        ctx.output.out(renderBuildReport(result, choice));
      } catch (e) {
        progress?.close();
        // Nix's own error text (with file:line:column for an evaluation error), then the log tail.
        if (
          e instanceof NixpoolError &&
          !opts.json &&
          (e.code === "BUILD_FAILED" || typeof e.details?.["nixError"] === "string")
        ) {
          const tail = (e.details?.["logTail"] as string[] | undefined) ?? [];
          const nixError = typeof e.details?.["nixError"] === "string" ? e.details["nixError"] : "";
          if (nixError) ctx.output.err(nixError);
          if (tail.length)
            ctx.output.err(`last log lines:\n  ${tail.map(sanitizeTerminalLine).join("\n  ")}`);
        }
        throw e;
      } finally {
        untrap();
      }
    });
};

/**
 * The coordinators this build goes to, in the order tried: --coordinator, NIXPOOL_COORDINATOR
 * (each one or a comma-separated list), or a serve running on this state directory; none with
 * --no-coordinator, and a found one is passed over for --on or --dispatcher hook (which only a
 * local build does).
 */
async function coordinatorsFor(ctx: Context, opts: BuildFlags): Promise<CoordinatorClient[] | undefined> {
  if (opts.coordinator === false) return undefined;
  const explicit = opts.coordinator ?? (process.env["NIXPOOL_COORDINATOR"]?.trim() || undefined);
  // The coordinator applies its own inventory's trust policy; a client cannot loosen or tighten it per build.
  const localOnly = opts.on
    ? "--on"
    : opts.dispatcher === "hook"
      ? "--dispatcher hook"
      : opts.trustedOnly
        ? "--trusted-only"
        : opts.verify !== undefined || (opts.verifyOnly?.length ?? 0) > 0
          ? "--verify"
          : undefined;
  if (localOnly) {
    if (explicit === undefined) return undefined;
    throw new NixpoolError(
      "FLAG_CONFLICT",
      `${localOnly} builds here; it does not go through a coordinator.`,
      {
        hint: `Drop ${localOnly}, or build here: nixpool build --no-coordinator ${localOnly} …`,
        exitCode: ExitCode.usage,
      },
    );
  }
  const targets = await findCoordinators(opts.coordinator, ctx.stateDir, process.env);
  return targets?.map((t) => new CoordinatorClient(t));
}

/**
 * What Nix's build hook gets: Nix files as nix-build takes them; anything else (flakes) is
 * evaluated here first, and nix-build realises the derivations (`DRV!OUTPUT`).
 */
async function hookTarget(req: EvaluateRequest): Promise<{
  paths: string[];
  attrs?: readonly string[];
  args?: readonly NixArg[];
  roots?: EvaluatedRoot[];
}> {
  const files = req.installables.filter((i) => i.kind === "file");
  const first = files[0];
  if (first && files.length === req.installables.length)
    return { paths: files.map((f) => f.file), attrs: first.attrs, args: first.args };
  const roots = await evaluateDerivations(req);
  return { paths: roots.map((r) => `${r.drv}!${r.output}`), roots };
}

/** NIXPOOL_BACKOFF_BASE_MS: a shorter builder backoff, for tests and demos. */
function backoffFromEnv(): { backoffBaseMs?: number } {
  const v = process.env["NIXPOOL_BACKOFF_BASE_MS"];
  return v !== undefined && /^\d+$/.test(v) ? { backoffBaseMs: Number(v) } : {};
}
