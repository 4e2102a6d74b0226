import { splitAttempts, type DerivationRecord, type PhaseSpan } from "./build-record.js";
import { redact } from "./redact.js";

/** What the chart needs besides the records: its title, the wall time, the pool's slots. */
export interface TimelineOptions {
  title: string;
  wallMs: number;
  builders: readonly { name: string; slots: number }[];
}

const COLOURS = { upload: "#4e79a7", build: "#59a14f", download: "#f28e2b" } as const;
const FAILED = "#d62728";
const ROW_HEIGHT = 20;
const BAR_HEIGHT = 14;
const CHAR_WIDTH = 7.2; // 12px monospace
const MARGIN = 16;
const HEADER_HEIGHT = 92;
const AXIS_HEIGHT = 22;

/** Text safe inside an XML element or a double-quoted attribute. */
export function escapeXml(text: string): string {
  return (
    text
      // Characters XML 1.0 forbids (control characters, lone surrogates, U+FFFE/U+FFFF) would make
      // the file unreadable: they are shown as "?".
      // eslint-disable-next-line no-control-regex
      .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/g, "?")
      .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "?")
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;")
      .replace(/'/g, "&apos;")
  );
}

/** A tick step of 1, 2 or 5 × 10^k seconds (or whole minutes) giving about `target` ticks. */
function tickStepMs(spanMs: number, target: number): number {
  const steps = [
    100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
    1_800_000, 3_600_000,
  ];
  const ideal = spanMs / target;
  for (const s of steps) if (s >= ideal) return s;
  return Math.ceil(ideal / 3_600_000) * 3_600_000;
}

/** "0s", "2.5s", "45s", "2m", "1m30s", "1h", "1h30m". */
function formatTick(ms: number): string {
  const s = Math.round(ms / 100) / 10;
  if (s < 60) return `${s}s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    const rest = Math.round(s - m * 60);
    return rest === 0 ? `${m}m` : `${m}m${String(rest).padStart(2, "0")}s`;
  }
  const h = Math.floor(s / 3600);
  const m = Math.round((s - h * 3600) / 60);
  return m === 0 ? `${h}h` : `${h}h${String(m).padStart(2, "0")}m`;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)}s`;
const num = (n: number) => String(Math.round(n * 10) / 10);

/** The first line of a message, redacted and short enough for a tooltip. */
function shortReason(text: string): string {
  const line =
    redact(text)
      .split("\n")
      .find((l) => l.trim() !== "") ?? "";
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

interface Bar {
  span: PhaseSpan;
  record: DerivationRecord;
  attempt: number;
  attempts: number;
  /** Why this attempt ended without a result, or null when it succeeded (or still runs). */
  failure: string | null;
  /** The attempt's first span, and how long the whole attempt took. */
  first: boolean;
  attemptMs: number;
}

/**
 * Every span as a bar, each knowing its attempt and whether that attempt failed. Attempts that
 * ended before their first span (a connection that failed) have no bars, so attempts with spans
 * are numbered from the last one back.
 */
function collectBars(records: readonly DerivationRecord[]): Bar[] {
  const bars: Bar[] = [];
  for (const record of records) {
    const attempts = splitAttempts(record);
    const total = Math.max(record.attempts, attempts.length);
    attempts.forEach((spans, i) => {
      const attempt = total - (attempts.length - 1 - i);
      const isLast = i === attempts.length - 1;
      // The last attempt succeeded unless the derivation failed or waits for another try.
      const succeeded =
        isLast && (record.status === "built" || record.status === "running" || record.status === "cached");
      const failure = succeeded
        ? null
        : shortReason(
            isLast && record.status === "failed"
              ? (record.error ?? "failed")
              : (record.retries[attempt - 1]?.reason ?? "attempt failed, retried"),
          );
      const attemptMs = (spans[spans.length - 1]?.endMs ?? 0) - (spans[0]?.startMs ?? 0);
      spans.forEach((span, j) =>
        bars.push({ span, record, attempt, attempts: total, failure, first: j === 0, attemptMs }),
      );
    });
  }
  return bars;
}

/**
 * The build as a standalone SVG Gantt chart: one row per builder slot ("local1 #1"), one bar per
 * phase span coloured by phase, failed attempts hatched and outlined in red, a tooltip on
 * every bar and a time axis in seconds. All text is escaped: derivation names come from Nix files.
 */
export function renderTimelineSvg(records: readonly DerivationRecord[], options: TimelineOptions): string {
  const bars = collectBars(records);

  // Rows: the pool's slots in order, then any slot a span names that the pool did not list.
  const rowKeys: string[] = [];
  const rowIndex = new Map<string, number>();
  const addRow = (builder: string, slot: number) => {
    const key = `${builder} #${slot}`;
    if (!rowIndex.has(key)) {
      rowIndex.set(key, rowKeys.length);
      rowKeys.push(key);
    }
  };
  for (const b of options.builders) for (let s = 1; s <= b.slots; s++) addRow(b.name, s);
  const extra = bars
    .map((b) => b.span)
    .filter((s) => !rowIndex.has(`${s.builder} #${s.slot}`))
    .sort((a, b) => a.builder.localeCompare(b.builder) || a.slot - b.slot);
  for (const s of extra) addRow(s.builder, s.slot);

  const endMs = bars.reduce((m, b) => Math.max(m, b.span.endMs), Math.max(options.wallMs, 1));
  const perRow = new Map<number, number>();
  for (const b of bars) {
    const r = rowIndex.get(`${b.span.builder} #${b.span.slot}`) ?? 0;
    perRow.set(r, (perRow.get(r) ?? 0) + 1);
  }
  const densest = [...perRow.values()].reduce((m, n) => Math.max(m, n), 0);
  // Wider when a row holds many bars, so each stays a few pixels wide (browsers scroll).
  const plotWidth = Math.round(Math.min(8000, Math.max(960, densest * 6)));
  const labelWidth = Math.ceil(Math.max(8, ...rowKeys.map((k) => k.length)) * CHAR_WIDTH) + 12;
  const plotX = MARGIN + labelWidth;
  const plotY = HEADER_HEIGHT + AXIS_HEIGHT;
  const plotHeight = Math.max(1, rowKeys.length) * ROW_HEIGHT;
  const bottomAxis = rowKeys.length > 20;
  const width = plotX + plotWidth + MARGIN;
  const height = plotY + plotHeight + (bottomAxis ? AXIS_HEIGHT : 0) + MARGIN;
  const x = (ms: number) => plotX + (Math.max(0, ms) / endMs) * plotWidth;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
  );
  out.push("<defs>");
  for (const [phase, colour] of Object.entries(COLOURS)) {
    out.push(
      `<pattern id="failed-${phase}" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">` +
        `<rect class="pattern" width="6" height="6" fill="${colour}"/>` +
        `<line x1="0" y1="0" x2="0" y2="6" stroke="${FAILED}" stroke-width="3"/></pattern>`,
    );
  }
  out.push("</defs>");
  out.push(`<rect class="background" width="${width}" height="${height}" fill="#ffffff"/>`);

  // Header: title, summary, legend.
  const built = records.filter((r) => r.status === "built").length;
  const cached = records.filter((r) => r.status === "cached").length;
  const failed = records.filter((r) => r.status === "failed").length;
  const retried = records.filter((r) => r.retries.length > 0).length;
  const summary =
    `${records.length} derivations: ${built} built, ${cached} cached, ${retried} retried` +
    `${failed ? `, ${failed} failed` : ""}; wall time ${seconds(options.wallMs)}; ` +
    `${rowKeys.length} slots`;
  out.push(
    `<text x="${MARGIN}" y="${MARGIN + 14}" font-size="16" font-weight="bold">${escapeXml(options.title)}</text>`,
  );
  out.push(`<text x="${MARGIN}" y="${MARGIN + 34}" fill="#444444">${escapeXml(summary)}</text>`);
  const legend: [string, string, string][] = [
    ["upload", `fill="${COLOURS.upload}"`, "upload"],
    ["build", `fill="${COLOURS.build}"`, "build"],
    ["download", `fill="${COLOURS.download}"`, "download"],
    [
      "failed",
      `fill="url(#failed-build)" stroke="${FAILED}" stroke-width="1.5"`,
      "failed or retried attempt",
    ],
  ];
  let lx = MARGIN;
  const ly = MARGIN + 48;
  for (const [key, paint, label] of legend) {
    out.push(
      `<g class="legend legend-${key}"><rect x="${lx}" y="${ly}" width="14" height="12" ${paint}/>` +
        `<text x="${lx + 19}" y="${ly + 10}">${label}</text></g>`,
    );
    lx += 19 + label.length * 6.6 + 18;
  }

  // Rows: zebra bands and labels.
  rowKeys.forEach((key, i) => {
    const y = plotY + i * ROW_HEIGHT;
    if (i % 2 === 1) {
      out.push(
        `<rect class="band" x="${plotX}" y="${y}" width="${plotWidth}" height="${ROW_HEIGHT}" fill="#f3f3f3"/>`,
      );
    }
    out.push(
      `<text class="row-label" x="${plotX - 8}" y="${y + ROW_HEIGHT / 2 + 4}" text-anchor="end" font-family="monospace">${escapeXml(key)}</text>`,
    );
  });

  // Time axis: grid lines with labels on top (and at the bottom of tall charts).
  const step = tickStepMs(endMs, Math.max(4, Math.round(plotWidth / 100)));
  out.push('<g class="axis" fill="#444444" font-size="11">');
  for (let t = 0; t <= endMs + 1e-6; t += step) {
    const tx = num(x(t));
    out.push(
      `<line x1="${tx}" y1="${plotY - 4}" x2="${tx}" y2="${plotY + plotHeight}" stroke="#dddddd"/>` +
        `<text x="${tx}" y="${plotY - 8}" text-anchor="middle">${formatTick(t)}</text>`,
    );
    if (bottomAxis) {
      out.push(`<text x="${tx}" y="${plotY + plotHeight + 15}" text-anchor="middle">${formatTick(t)}</text>`);
    }
  }
  out.push("</g>");
  out.push(
    `<rect class="frame" x="${plotX}" y="${plotY}" width="${plotWidth}" height="${plotHeight}" fill="none" stroke="#999999"/>`,
  );

  // Bars, then the labels that fit inside them (drawn last so no bar covers a label).
  const labels: string[] = [];
  const separators: string[] = [];
  for (const bar of bars) {
    const { span, record } = bar;
    const row = rowIndex.get(`${span.builder} #${span.slot}`) ?? 0;
    const x0 = x(span.startMs);
    // A span too short to see still gets a sliver of a pixel, so every span is visible.
    const w = Math.max(0.5, x(span.endMs) - x0);
    const y = plotY + row * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2;
    const tip =
      `${record.name}: ${span.phase} on ${span.builder} #${span.slot}, ${seconds(span.endMs - span.startMs)}` +
      ` (${seconds(span.startMs)} to ${seconds(span.endMs)})` +
      (bar.attempts > 1 ? `, attempt ${bar.attempt} of ${bar.attempts}` : "") +
      (bar.failure !== null ? `, failed: ${bar.failure}` : "");
    const paint =
      bar.failure !== null
        ? `fill="url(#failed-${span.phase})" stroke="${FAILED}" stroke-width="1.5"`
        : `fill="${COLOURS[span.phase]}"`;
    out.push(
      `<rect class="span ${span.phase}${bar.failure !== null ? " failed" : ""}" x="${num(x0)}" y="${num(y)}" ` +
        `width="${num(w)}" height="${BAR_HEIGHT}" ${paint}><title>${escapeXml(tip)}</title></rect>`,
    );
    // A white hairline where an attempt starts tells back-to-back derivations apart.
    if (bar.first && (bar.attemptMs / endMs) * plotWidth >= 4) {
      separators.push(
        `<line x1="${num(x0 + 0.5)}" y1="${num(y)}" x2="${num(x0 + 0.5)}" y2="${num(y + BAR_HEIGHT)}"/>`,
      );
    }
    if (span.phase === "build" && w >= 30) {
      const fit = Math.floor((w - 6) / 5.8);
      const name = record.name.length > fit ? `${record.name.slice(0, Math.max(1, fit - 1))}…` : record.name;
      labels.push(
        `<text x="${num(x0 + 3)}" y="${num(y + BAR_HEIGHT - 3.5)}" font-size="10.5" fill="#ffffff" pointer-events="none">${escapeXml(name)}</text>`,
      );
    }
  }
  if (separators.length > 0) {
    out.push('<g class="separators" stroke="#ffffff" stroke-width="1">', ...separators, "</g>");
  }
  if (labels.length > 0) out.push('<g class="bar-labels">', ...labels, "</g>");
  if (bars.length === 0) {
    out.push(
      `<text x="${num(plotX + plotWidth / 2)}" y="${num(plotY + plotHeight / 2 + 4)}" text-anchor="middle" fill="#666666">nothing was built or transferred: every output was already valid</text>`,
    );
  }
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
