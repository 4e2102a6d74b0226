import type { StatusSnapshot } from "../core/build-record.js";
import { redactForTerminal } from "../core/redact.js";
import { formatSeconds } from "./output.js";

// Escape sequences a builder's log may carry (colours, cursor moves, window titles): removed whole,
// so no half sequence reaches the terminal; any other control character becomes "?".
const ESCAPES = new RegExp(
  [
    String.raw`\x1b\[[0-?]*[ -/]*[@-~]`, // CSI: colours, cursor movement, erase
    String.raw`\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?`, // OSC: window title, hyperlinks
    String.raw`\x1b[@-Z\\-_]`, // other two-byte escapes
  ].join("|"),
  "g",
);

/** One line for a terminal: escape sequences removed, control characters shown as "?", redacted. */
export function sanitizeTerminalLine(text: string): string {
  return redactForTerminal(text.replace(ESCAPES, "")).replace(/[\n\t]/g, " ");
}

/** Cuts a line to `width` characters, ending with "…" when cut. */
function fit(line: string, width: number): string {
  if (line.length <= width) return line;
  return width <= 1 ? line.slice(0, Math.max(0, width)) : `${line.slice(0, width - 1)}…`;
}

/**
 * The live status block: a header (elapsed, done/total, running, queued, failed) and one line per
 * builder (state, slots in use, the derivations it is building), each cut to `columns` − 1
 * characters so no line wraps. With `maxLines`, builders that do not fit are summed up in one line.
 */
export function renderStatusBlock(s: StatusSnapshot, columns: number, maxLines?: number): string[] {
  const width = Math.max(20, (Number.isFinite(columns) && columns > 0 ? columns : 80) - 1);
  const header =
    `[${formatSeconds(s.elapsedMs)}] ${s.done}/${s.total} done, ${s.running} running, ` +
    `${s.queued} queued, ${s.failed} failed`;
  const nameWidth = Math.max(0, ...s.builders.map((b) => sanitizeTerminalLine(b.name).length));
  const stateWidth = Math.max(0, ...s.builders.map((b) => b.state.length));
  const slotsWidth = Math.max(0, ...s.builders.map((b) => `${b.running.length}/${b.slots}`.length));
  const builderLines = s.builders.map((b) => {
    const names = [...b.running]
      .sort((x, y) => x.slot - y.slot)
      .map((r) => sanitizeTerminalLine(r.name))
      .join(", ");
    const line =
      `  ${sanitizeTerminalLine(b.name).padEnd(nameWidth)}  ${b.state.padEnd(stateWidth)}  ` +
      `${`${b.running.length}/${b.slots}`.padStart(slotsWidth)}  ${names}`;
    return fit(line.trimEnd(), width);
  });
  const limit = maxLines !== undefined && maxLines >= 2 ? maxLines : Infinity;
  if (1 + builderLines.length > limit) {
    const shown = builderLines.slice(0, limit - 2);
    const hidden = s.builders.slice(limit - 2);
    const busy = hidden.reduce((n, b) => n + b.running.length, 0);
    const slots = hidden.reduce((n, b) => n + b.slots, 0);
    return [
      fit(header, width),
      ...shown,
      fit(`  … ${hidden.length} more builders, ${busy}/${slots} slots in use`, width),
    ];
  }
  return [fit(header, width), ...builderLines];
}

/** The stream the view writes to: process.stderr, or a stand-in in tests. */
export interface StatusStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

export interface StatusViewOptions {
  /** Least time between two redraws of the block (default 100 ms: at most 10 per second). */
  intervalMs?: number;
  /** Overrides the stream's own `isTTY` (e.g. false for TERM=dumb). */
  tty?: boolean;
  /** The clock redraws are spaced by (injected by tests; default `Date.now`). */
  now?: () => number;
}

export interface StatusView {
  /** Shows the new state (on a terminal; elsewhere nothing). */
  update(s: StatusSnapshot): void;
  /** Prints one log line, above the block on a terminal. */
  line(text: string): void;
  /** Removes the block and stops redrawing. */
  close(): void;
}

const ESC = "\x1b[";

/**
 * A live status view. On a terminal the block is redrawn in place (cursor up, erase to the end of
 * the screen, draw; each in one write so nothing tears), at most once per `intervalMs`, and log
 * lines go above it. Elsewhere (a pipe, a file, CI) only the log lines are printed, with no escape
 * sequence.
 */
export function createStatusView(stream: StatusStream, options: StatusViewOptions = {}): StatusView {
  const tty = options.tty ?? stream.isTTY === true;
  const intervalMs = options.intervalMs ?? 100;
  const now = options.now ?? Date.now;
  let snapshot: StatusSnapshot | undefined;
  let drawnLines = 0;
  let lastDrawAt = -Infinity;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  const erase = () => (drawnLines > 0 ? `\r${ESC}${drawnLines}A${ESC}J` : "");
  const block = () => {
    if (!snapshot) return "";
    // A block taller than the screen cannot be moved over: keep it one line shorter than the screen.
    const rows = stream.rows && stream.rows > 2 ? stream.rows - 1 : undefined;
    const lines = renderStatusBlock(snapshot, stream.columns ?? 80, rows);
    drawnLines = lines.length;
    return lines.map((l) => `${l}\n`).join("");
  };
  const draw = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (closed) return;
    lastDrawAt = now();
    stream.write(erase() + block());
  };

  return {
    update(s) {
      if (closed || !tty) return;
      snapshot = s;
      const wait = lastDrawAt + intervalMs - now();
      if (wait <= 0) draw();
      else if (!timer) {
        timer = setTimeout(draw, wait);
        // A pending redraw never keeps the process alive.
        timer.unref();
      }
    },
    line(text) {
      if (closed) return;
      const clean = text
        .replace(/\r?\n$/, "")
        .split(/\r?\n/)
        .map(sanitizeTerminalLine)
        .map((l) => `${l}\n`)
        .join("");
      if (!tty) {
        stream.write(clean);
        return;
      }
      // Erase the block, print the line where it was, and draw the block again below it.
      stream.write(erase() + clean + block());
    },
    close() {
      if (closed) return;
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (tty && drawnLines > 0) stream.write(erase());
      drawnLines = 0;
      closed = true;
    },
  };
}
