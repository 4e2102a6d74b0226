import type { BuilderReport, CheckResult, DoctorReport } from "./model.js";

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)}s`;
}

function renderRows(checks: readonly CheckResult[], indent: string): string[] {
  const idWidth = Math.max(...checks.map((c) => c.id.length), 2);
  const lines: string[] = [];
  for (const c of checks) {
    lines.push(`${indent}${c.status.padEnd(4)}  ${c.id.padEnd(idWidth)}  ${c.message}`);
    const pad = `${indent}${" ".repeat(6 + idWidth)}`;
    if (c.status === "fail" || c.status === "warn") {
      if (c.symptom) {
        const [first, ...rest] = c.symptom.split("\n");
        lines.push(`${pad}nix says: ${first ?? ""}`);
        for (const r of rest) lines.push(`${pad}          ${r}`);
      }
      if (c.fix) lines.push(`${pad}fix: ${c.fix}`);
    }
  }
  return lines;
}

function builderHeader(b: BuilderReport): string {
  return `${b.name}  ${b.uri}  ${b.address}  ${b.status.toUpperCase()}  ${seconds(b.durationMs)}`;
}

/** The doctor's report as text: a block of rows for this machine, then one per builder, then a summary. */
export function renderDoctorReport(r: DoctorReport): string {
  const out: string[] = [];
  if (r.local.length) {
    out.push("local");
    out.push(...renderRows(r.local, "  "));
  }
  for (const b of r.builders) {
    out.push("");
    out.push(builderHeader(b));
    out.push(...renderRows(b.checks, "  "));
  }
  const failed = r.builders.filter((b) => b.status === "fail").map((b) => b.name);
  out.push("");
  out.push(
    `${r.summary.pass} passed, ${r.summary.warn} warning${r.summary.warn === 1 ? "" : "s"}, ${r.summary.fail} failed, ${r.summary.skip} skipped in ${seconds(r.durationMs)}` +
      (failed.length ? `; failing builders: ${failed.join(", ")}` : ""),
  );
  return out.join("\n");
}

/** The --json form (documented in docs/doctor.md). */
export function toDoctorJson(r: DoctorReport): Record<string, unknown> {
  return {
    status: r.status,
    exitCode: r.exitCode,
    durationMs: r.durationMs,
    summary: r.summary,
    local: r.local,
    builders: r.builders,
  };
}
