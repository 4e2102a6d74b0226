import { redact } from "../core/redact.js";

export interface Output {
  out(text: string): void;
  err(text: string): void;
  json(value: unknown): void;
}

export const stdOutput: Output = {
  out: (t) => void process.stdout.write(t.endsWith("\n") ? t : `${t}\n`),
  err: (t) => void process.stderr.write(t.endsWith("\n") ? t : `${t}\n`),
  json: (v) => void process.stdout.write(`${redact(JSON.stringify(v, null, 2))}\n`),
};

/** Renders rows as an aligned text table with a header. */
export function renderTable(headers: readonly string[], rawRows: readonly (readonly string[])[]): string {
  // Cells may come from an API (server names, labels): no control characters reach the terminal.
  // eslint-disable-next-line no-control-regex
  const rows = rawRows.map((r) => r.map((c) => c.replace(/[\x00-\x1f\x7f-\x9f]/g, "?")));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** Human-readable seconds (its one home is core/duration.ts, which the dashboard shares). */
export { formatSeconds } from "../core/duration.js";
