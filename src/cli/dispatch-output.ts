import { writeFile } from "node:fs/promises";
import { basename } from "node:path";
import { toJsonRecord } from "../core/build-record.js";
import type { DispatcherChoice } from "../core/dispatch/choose-dispatcher.js";
import { compareNatural } from "../core/natural-order.js";
import { renderTimelineSvg } from "../core/timeline-svg.js";
import type { DispatchEvent, DispatchResult } from "../dispatch/run-dispatch.js";
import { createStatusView, sanitizeTerminalLine } from "./build-status.js";
import { renderDispatchReport } from "./build-report.js";
import type { Context } from "./context.js";

/**
 * What a dispatched build shows while it runs: on a terminal one live status block, otherwise
 * plain lines; with -L every build log line, prefixed with its derivation.
 */
export function progressPrinter(ctx: Context, printLogs: boolean, showProgress: boolean) {
  const view = showProgress ? createStatusView(process.stderr, {}) : undefined;
  // Build log lines come from builders: no escape sequence reaches the terminal, view or not.
  const line = (text: string) => (view ? view.line(text) : ctx.output.err(sanitizeTerminalLine(text)));
  const onEvent = (e: DispatchEvent): void => {
    switch (e.kind) {
      case "status":
        view?.update(e.snapshot);
        break;
      case "log":
        if (printLogs) line(`${e.name}> ${e.line}`);
        break;
      case "start":
        if (showProgress && !process.stderr.isTTY)
          line(`building ${e.name} on ${e.builder}${e.attempt > 1 ? ` (try ${e.attempt})` : ""}`);
        break;
      case "done":
        if (showProgress && !process.stderr.isTTY)
          line(`built    ${e.name} on ${e.builder} (${(e.ms / 1000).toFixed(2)}s)`);
        break;
      case "retry":
        if (showProgress) line(`retrying ${e.name}: ${e.reason}`);
        break;
      case "builder-down":
        if (showProgress) line(`builder ${e.builder} is down: ${e.reason}`);
        break;
    }
  };
  return { onEvent, close: () => view?.close() };
}

/** The --json of a dispatched build: per derivation, builder, tries, ISO times and phase times. */
export function dispatchJson(r: DispatchResult, dispatcher: DispatcherChoice) {
  return {
    outputs: r.outputs,
    outLink: r.outLink,
    wallMs: r.wallMs,
    dispatcher,
    // In natural order of names (leaf-2 before leaf-10), as for Nix's build hook.
    derivations: [...r.records]
      .sort((a, b) => compareNatural(a.name, b.name))
      .map((rec) => toJsonRecord(rec, r.startedAtMs)),
    stats: r.stats,
  };
}

export function printDispatchReport(ctx: Context, r: DispatchResult, dispatcher: DispatcherChoice): void {
  ctx.output.out(
    renderDispatchReport(r.records, {
      wallMs: r.wallMs,
      outputs: r.outputs,
      outLink: r.outLink,
      dispatcher: { kind: dispatcher.kind, reason: dispatcher.reason },
    }),
  );
}

export async function writeTimeline(path: string, r: DispatchResult, file: string): Promise<void> {
  const svg = renderTimelineSvg(r.records, {
    title: `nixpool build ${basename(file)}`,
    wallMs: r.wallMs,
    builders: r.builders,
  });
  await writeFile(path, svg);
}
