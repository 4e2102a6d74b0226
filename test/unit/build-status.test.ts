import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import type { StatusSnapshot } from "../../src/core/build-record.js";
import { createStatusView, renderStatusBlock, sanitizeTerminalLine } from "../../src/cli/build-status.js";
import { screen } from "../helpers/terminal-screen.js";

const snapshot = (over: Partial<StatusSnapshot> = {}): StatusSnapshot => ({
  elapsedMs: 12_300,
  total: 41,
  done: 12,
  running: 3,
  queued: 25,
  failed: 1,
  builders: [
    {
      name: "local1",
      slots: 2,
      state: "up",
      running: [
        { slot: 2, name: "leaf-17" },
        { slot: 1, name: "leaf-16" },
      ],
    },
    { name: "local2", slots: 2, state: "connecting", running: [] },
    { name: "hetzner-cx22", slots: 4, state: "down", running: [{ slot: 1, name: "leaf-3" }] },
  ],
  ...over,
});

test("the block: a header and one aligned line per builder", () => {
  assert.deepEqual(renderStatusBlock(snapshot(), 80), [
    "[12.3s] 12/41 done, 3 running, 25 queued, 1 failed",
    "  local1        up          2/2  leaf-16, leaf-17",
    "  local2        connecting  0/2",
    "  hetzner-cx22  down        1/4  leaf-3",
  ]);
});

test("lines are cut to the terminal's width, and builders that do not fit are summed up", () => {
  const many = Array.from({ length: 30 }, (_, i) => ({
    slot: i + 1,
    name: `a-rather-long-derivation-name-${i}`,
  }));
  const s = snapshot({ builders: [{ name: "big", slots: 32, state: "up", running: many }] });
  const [, line] = renderStatusBlock(s, 60);
  assert.equal(line?.length, 59);
  assert.ok(line?.endsWith("…"));
  const lines = renderStatusBlock(snapshot(), 80, 3);
  assert.equal(lines.length, 3);
  assert.equal(lines[2], "  … 2 more builders, 1/6 slots in use");
});

test("derivation and builder names cannot move the cursor", () => {
  const s = snapshot({
    builders: [
      {
        name: "b\u001b[2J",
        slots: 1,
        state: "up",
        running: [{ slot: 1, name: "x\u001b]0;owned\u0007y\rz\u009b" }],
      },
    ],
  });
  const block = renderStatusBlock(s, 80).join("\n");
  // eslint-disable-next-line no-control-regex
  assert.doesNotMatch(block, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
  assert.match(block, /b {2}up {2}1\/1 {2}xy\?z\?/);
  assert.equal(sanitizeTerminalLine("\u001b[1;31mred\u001b[0m\ttab"), "red tab");
});

/** A stand-in for process.stderr: records what is written. */
function fakeStream(isTTY: boolean, columns = 80, rows = 24) {
  const writes: string[] = [];
  return { writes, isTTY, columns, rows, write: (t: string) => (writes.push(t), true) };
}

test("on a terminal: the block is redrawn in place and log lines go above it", async () => {
  const out = fakeStream(true);
  let now = 1_000;
  const view = createStatusView(out, { intervalMs: 20, now: () => now });
  view.update(snapshot());
  view.update(snapshot({ done: 13 })); // too soon: drawn later
  now += 20;
  assert.deepEqual(screen(out.writes).slice(0, 1), ["[12.3s] 12/41 done, 3 running, 25 queued, 1 failed"]);
  view.line("leaf-16> hello\u001b[2J");
  await sleep(60);
  view.line("leaf-17> world");
  assert.deepEqual(screen(out.writes), [
    "leaf-16> hello",
    "leaf-17> world",
    "[12.3s] 13/41 done, 3 running, 25 queued, 1 failed",
    "  local1        up          2/2  leaf-16, leaf-17",
    "  local2        connecting  0/2",
    "  hetzner-cx22  down        1/4  leaf-3",
    "",
  ]);
  // Every write is whole: erase and redraw go out together.
  assert.ok(out.writes.every((w) => !w.endsWith("\u001b[J")));
  view.close();
  assert.deepEqual(screen(out.writes), ["leaf-16> hello", "leaf-17> world", ""]);
  view.update(snapshot());
  view.line("after close");
  assert.deepEqual(screen(out.writes), ["leaf-16> hello", "leaf-17> world", ""]);
});

test("on a terminal: at most one redraw per interval, the last state always shown", async () => {
  const out = fakeStream(true);
  // The clock stands still while the updates arrive, however long a loaded machine takes for them.
  const view = createStatusView(out, { intervalMs: 50, now: () => 1_000 });
  for (let i = 0; i < 200; i++) view.update(snapshot({ done: i }));
  assert.equal(out.writes.length, 1);
  await sleep(120);
  assert.equal(out.writes.length, 2);
  assert.match(screen(out.writes)[0] ?? "", /^\[12\.3s\] 199\/41 done/);
  view.close();
});

test("on a terminal, narrow and short: no line wraps, the block fits the screen", () => {
  const out = fakeStream(true, 30, 3);
  const view = createStatusView(out, { intervalMs: 0 });
  view.update(snapshot());
  const shown = screen(out.writes).filter((l) => l !== "");
  assert.equal(shown.length, 2);
  assert.ok(shown.every((l) => l.length <= 29));
  view.close();
});

test("not a terminal: only the log lines, no block, no escape bytes", async () => {
  const out = fakeStream(false);
  const view = createStatusView(out, { intervalMs: 0 });
  view.update(snapshot());
  view.line("building leaf-1 on local1");
  view.line("leaf-1> \u001b[32mgreen\u001b[0m\n");
  view.update(snapshot({ done: 40 }));
  await sleep(10);
  view.close();
  assert.equal(out.writes.join(""), "building leaf-1 on local1\nleaf-1> green\n");
  // eslint-disable-next-line no-control-regex
  assert.doesNotMatch(out.writes.join(""), /\u001b/);
  // A terminal told to behave like one that is not (TERM=dumb, say).
  const forced = fakeStream(true);
  const plain = createStatusView(forced, { tty: false });
  plain.update(snapshot());
  plain.line("x");
  plain.close();
  assert.deepEqual(forced.writes, ["x\n"]);
});
