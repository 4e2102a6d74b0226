import type { RegisterCommands } from "../cli/commands.js";
import type { Context } from "../cli/context.js";
import { trapSignals } from "../adapters/signals.js";
import { formatSeconds, renderTable } from "../cli/output.js";
import { progressPrinter, writeTimeline } from "../cli/dispatch-output.js";
import { addFlakeOptions, flakeOptionsOf, type InstallableFlags } from "../cli/nix-args.js";
import { buildTrustPolicy } from "../cli/trust-options.js";
import { localSystem } from "../config/load.js";
import type { DerivationRecord } from "../core/build-record.js";
import { ExitCode, NixpoolError, isNixpoolError, type ErrorCode } from "../core/errors.js";
import {
  checkParts,
  checkRows,
  isCheckFailure,
  type CheckMember,
  type CheckRow,
} from "../core/flake-check.js";
import { flakeLabel, type FlakeInstallable, type FlakeOptions } from "../core/installable.js";
import { buildError, followRemoteBuild, uploadFor } from "../cli/remote-build.js";
import { CoordinatorClient } from "../serve/client/coordinator-client.js";
import { findCoordinators } from "../serve/client/coordinator-target.js";
import { dispatchBuild } from "../dispatch/dispatch-build.js";
import { compareNatural } from "../core/natural-order.js";
import { evaluateFlake, lockFlakes, onceEach, type EvaluatedRoot } from "../dispatch/evaluate.js";
import { readInstallables } from "../dispatch/installables.js";
import type { DispatchResult } from "../dispatch/run-dispatch.js";

interface CheckFlags extends InstallableFlags {
  /** A URL, false for --no-coordinator, undefined: NIXPOOL_COORDINATOR or this state directory's serve. */
  coordinator?: string | false;
  all?: boolean;
  keepGoing?: boolean;
  copyBack?: string;
  builder: string[];
  tag: string[];
  timeline?: string;
  json?: boolean;
  quiet?: boolean;
  printBuildLogs?: boolean;
}

function collectName(value: string, acc: string[]): string[] {
  return [...acc, value];
}

/** The flake named on the command line (default "."): a bare flake reference, not an output. */
async function readFlake(word: string | undefined, flake: FlakeOptions): Promise<FlakeInstallable> {
  const [i] = await readInstallables([word ?? "."], { attrs: [], args: [] }, flake);
  if (i?.kind === "flake" && i.fragment === "") return i;
  throw new NixpoolError(
    "USAGE",
    `nixpool check takes a flake, not ${i?.kind === "flake" ? "an output" : "a Nix file"} (${word}).`,
    {
      hint:
        i?.kind === "flake"
          ? `Check the whole flake (nixpool check ${i.shown.split("#")[0] ?? "."}), or build the output: nixpool build ${i.shown}`
          : "Check a flake: nixpool check . (or build the file: nixpool build FILE.nix)",
      exitCode: ExitCode.usage,
    },
  );
}

/** Everything the flake offers for `system`: checks to build, packages and systems to evaluate (or build with --all). */
async function evaluateParts(
  flake: FlakeInstallable,
  options: FlakeOptions,
  all: boolean,
  signal: AbortSignal,
  onWarning: ((m: string) => void) | undefined,
): Promise<{ members: CheckMember[]; roots: EvaluatedRoot[] }> {
  const system = options.system ?? localSystem();
  const toEvaluate = checkParts(flake, system);
  await lockFlakes(
    toEvaluate.map((p) => p.installable),
    options,
    signal,
    onWarning,
  );
  const parts = await Promise.all(
    toEvaluate.map(async (part) => {
      try {
        return { part, ...(await evaluateFlake(part.installable, options, part.select, signal, onWarning)) };
      } catch (e) {
        // A flake without checks, packages or systems has nothing of that kind to check.
        if (isNixpoolError(e) && (e.code === "FLAKE_ATTRIBUTE_MISSING" || e.code === "FLAKE_NO_DERIVATIONS"))
          return { part, roots: [], failed: [] };
        throw e;
      }
    }),
  );
  const members: CheckMember[] = [];
  const roots: EvaluatedRoot[] = [];
  for (const { part, roots: found, failed } of parts) {
    const built = part.kind === "check" || all;
    for (const r of found) {
      members.push({ name: r.attr ?? r.drv, kind: part.kind, drv: r.drv, built });
      if (built) roots.push(r);
    }
    for (const f of failed) members.push({ name: f.attr, kind: part.kind, error: f.error.message, built });
  }
  // c2 before c10, as a person reads them; checks, then packages, then systems.
  members.sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || compareNatural(a.name, b.name));
  return { members, roots };
}

const KIND_ORDER = { check: 0, package: 1, nixos: 2 } as const;

/** The build's records, also when some derivations failed (keep-going: the error carries them). */
async function buildRecords(
  run: () => Promise<DispatchResult>,
): Promise<{ records: DerivationRecord[]; result?: DispatchResult }> {
  try {
    const result = await run();
    return { records: result.records, result };
  } catch (e) {
    const records = isNixpoolError(e) && e.code === "BUILD_FAILED" ? e.details?.["records"] : undefined;
    if (Array.isArray(records)) return { records: records as DerivationRecord[] };
    throw e;
  }
}

function renderRows(rows: readonly CheckRow[]): string {
  return renderTable(
    ["CHECK", "RESULT", "BUILDER", "TIME"],
    rows.map((r) => [
      r.name,
      r.cached ? "passed (cached)" : r.status,
      r.builder ?? "-",
      r.buildMs === null ? "-" : formatSeconds(r.buildMs),
    ]),
  );
}

function report(
  ctx: Context,
  rows: readonly CheckRow[],
  wallMs: number,
  json: boolean,
  flakeRef: string,
): void {
  const failed = rows.filter(isCheckFailure);
  if (json)
    ctx.output.json({
      checks: rows,
      failed: failed.length,
      wallMs,
      ...(failed.length
        ? { error: { code: CHECK_FAILED_CODE, message: `${failed.length} checks failed.` } }
        : {}),
    });
  else {
    const built = rows.filter((r) => r.status !== "evaluated").length;
    ctx.output.out(renderRows(rows));
    ctx.output.out(
      `\n${built - failed.length} of ${built} passed${rows.length > built ? `, ${rows.length - built} evaluated` : ""} in ${formatSeconds(wallMs)}.`,
    );
    for (const f of failed) ctx.output.err(`${f.name}: ${f.status}: ${f.error ?? ""}`);
  }
  if (failed.length === 0) return;
  // The table (or the JSON) is the report; the error says how many and what next, and sets the exit status.
  process.exitCode = ExitCode.failed;
  ctx.output.err(
    `error: ${failed.length} of the flake's checks failed (${CHECK_FAILED_CODE}): ${failed
      .map((f) => f.name)
      .slice(0, 5)
      .join(", ")}${failed.length > 5 ? ", …" : ""}.`,
  );
  ctx.output.err(
    `hint: rebuild one with its log: nixpool build ${flakeRef}#${failed[0]?.name ?? "checks.SYSTEM.NAME"} -L`,
  );
}

/** The code a failed check carries in --json and on stderr. */
const CHECK_FAILED_CODE = "CHECKS_FAILED" satisfies ErrorCode;

/** nixpool check [FLAKE]: builds every check of a flake on the pool (nix flake check, faster). */
export const registerCheck: RegisterCommands = (program, context) => {
  const cmd = program
    .command("check")
    .description(
      "build a flake's checks on the pool (and evaluate its packages and NixOS systems), as nix flake check",
    )
    .argument("[flake]", "the flake (default: .)");
  addFlakeOptions(cmd, "--system aarch64-linux")
    .option("--all", "build the packages and NixOS systems too, not only the checks")
    .option("--no-keep-going", "stop at the first failing check")
    .option("--copy-back <what>", "none (default: results stay on the builders), needed or all")
    .option("--builder <name>", "build only on this builder (repeatable)", collectName, [])
    .option("--tag <tag>", "build only on builders with this tag (repeatable)", collectName, [])
    .option("--timeline <file.svg>", "draw the checks' builds as a Gantt chart")
    .option(
      "--coordinator <url>",
      "build the checks through a coordinator: unix:/path/api.sock or http://HOST:PORT, or several: URL1,URL2",
    )
    .option("--no-coordinator", "build here even if a nixpool serve runs on this state directory")
    .option("--json", "print JSON")
    .option("--quiet", "no progress lines")
    .option(
      "-L, --print-build-logs",
      "print the builders' build logs, each line prefixed with its derivation",
    )
    .action(async (word: string | undefined, opts: CheckFlags) => {
      const ctx = context();
      const t0 = Date.now();
      const options = flakeOptionsOf(opts);
      const copyBack = opts.copyBack ?? "none";
      if (copyBack !== "none" && copyBack !== "needed" && copyBack !== "all")
        throw new NixpoolError("USAGE", `--copy-back must be none, needed or all (got "${copyBack}").`, {
          hint: "For example: nixpool check . --copy-back needed",
          exitCode: ExitCode.usage,
        });
      const flake = await readFlake(word, options);
      const controller = new AbortController();
      const untrap = trapSignals(controller);
      const showProgress = !opts.json && !opts.quiet;
      const progress =
        showProgress || opts.printBuildLogs
          ? progressPrinter(ctx, opts.printBuildLogs === true, showProgress)
          : undefined;
      try {
        const warn = onceEach(opts.quiet ? undefined : (m: string) => ctx.output.err(m));
        const { members, roots } = await evaluateParts(
          flake,
          options,
          opts.all === true,
          controller.signal,
          warn,
        );
        if (members.length === 0) {
          throw new NixpoolError(
            "FLAKE_NO_DERIVATIONS",
            `The flake ${flake.ref} has no checks, packages or NixOS configurations for ${options.system ?? localSystem()}.`,
            {
              hint: "Add checks.SYSTEM.NAME to flake.nix, or check another system: nixpool check --system aarch64-linux",
              exitCode: ExitCode.usage,
            },
          );
        }
        const targets =
          opts.coordinator === false
            ? undefined
            : await findCoordinators(opts.coordinator, ctx.stateDir, process.env);
        if (targets && roots.length) {
          progress?.close();
          const clients = targets.map((t) => new CoordinatorClient(t));
          const display = {
            json: opts.json === true,
            quiet: opts.quiet === true,
            printLogs: opts.printBuildLogs === true,
          };
          const { detail, client } = await followRemoteBuild(ctx, clients, display, async (to, signal) => {
            await uploadFor(ctx, to, roots, display, signal);
            return {
              derivations: roots.map((r) => ({ drv: r.drv, output: r.output })),
              label: `check ${flakeLabel(flake)}`,
              keepGoing: opts.keepGoing !== false,
              copyBack: copyBack === "all" ? "all" : "needed",
              ...(opts.builder.length ? { builders: opts.builder } : {}),
              ...(opts.tag.length ? { tags: opts.tag } : {}),
            };
          });
          // A failed check is in the report; a build that failed otherwise (cancelled, no builder) is an error.
          if (!detail.report || detail.status === "cancelled") throw buildError(detail, client.name);
          report(
            ctx,
            checkRows(members, detail.report.records),
            Date.now() - t0,
            opts.json === true,
            flake.shown,
          );
          return;
        }
        const builders = (await ctx.selectBuilders(opts.builder)).filter((b) =>
          opts.tag.every((t) => b.tags.includes(t)),
        );
        const trust = buildTrustPolicy((await ctx.loadInventory()).policy, {});
        const { records, result } = roots.length
          ? await buildRecords(() =>
              dispatchBuild({
                builders,
                stateDir: ctx.stateDir,
                source: { roots },
                outLink: null,
                keepGoing: opts.keepGoing !== false,
                copyBack,
                trust,
                signal: controller.signal,
                ...(progress ? { onEvent: progress.onEvent } : {}),
              }),
            )
          : { records: [] as DerivationRecord[], result: undefined };
        progress?.close();
        if (opts.timeline && result) await writeTimeline(opts.timeline, result, `check ${flake.shown}`);
        report(ctx, checkRows(members, records), Date.now() - t0, opts.json === true, flake.shown);
      } finally {
        progress?.close();
        untrap();
      }
    });
};
