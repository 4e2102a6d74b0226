import { test } from "node:test";
import assert from "node:assert/strict";
import { renderDispatchReport, sortByStart } from "../../src/cli/build-report.js";
import { compareNatural } from "../../src/core/natural-order.js";
import { attemptSpans, makeRecord } from "../helpers/build-records.js";

test("the report: one row per derivation in start order, phases, retries, summary, outputs", () => {
  const records = [
    makeRecord({
      name: "graph-root",
      builder: "local1",
      slot: 1,
      readyMs: 2000,
      spans: attemptSpans("local1", 1, 2100, { upload: 200, build: 50, download: 30 }),
    }),
    makeRecord({
      name: "leaf-10",
      builder: "local1",
      slot: 2,
      readyMs: 0,
      spans: attemptSpans("local1", 2, 100, { build: 500, download: 20 }),
    }),
    makeRecord({
      name: "leaf-2",
      builder: "local1",
      slot: 1,
      readyMs: 0,
      attempts: 2,
      retries: [{ builder: "local2", reason: "builder local2 lost the connection" }],
      spans: [
        ...attemptSpans("local2", 1, 100, { upload: 40, build: 300 }),
        ...attemptSpans("local1", 1, 600, { upload: 40, build: 1200, download: 20 }),
      ],
    }),
    makeRecord({ name: "leaf-1", status: "cached", builder: "local2", readyMs: null }),
    makeRecord({ name: "leaf-0", status: "cached", builder: null, readyMs: null }),
  ];
  const text = renderDispatchReport(records, {
    wallMs: 2420,
    outputs: ["/nix/store/bbbb-graph-root"],
    outLink: "/root/result",
    dispatcher: { kind: "nixpool", reason: "the default" },
  });
  assert.equal(
    text,
    [
      "DERIVATION  BUILDER  ATTEMPTS  QUEUED  UPLOAD  BUILD  DOWNLOAD  STATUS",
      "leaf-2      local1   2         0.26s   0.08s   1.50s  0.02s     built",
      "leaf-10     local1   1         0.10s   -       0.50s  0.02s     built",
      "graph-root  local1   1         0.10s   0.20s   0.05s  0.03s     built",
      "leaf-0      -        0         -       -       -      -         cached",
      "leaf-1      local2   0         -       -       -      -         cached",
      "",
      "Retried (1 attempt):",
      "  leaf-2, attempt 1 on local2: builder local2 lost the connection",
      "",
      "3 built, 2 cached, 1 retried in 2.42s, by nixpool's dispatcher (the default).",
      "Outputs (GC root /root/result):",
      "  /nix/store/bbbb-graph-root",
    ].join("\n"),
  );
});

test("failures, skips, the hook, no out-link, nothing built", () => {
  const failed = makeRecord({
    name: "broken",
    status: "failed",
    builder: "local1",
    error: "exit code 1",
    spans: attemptSpans("local1", 1, 0, { build: 100 }),
  });
  const skipped = makeRecord({ name: "after\u001b[2J", status: "skipped", readyMs: null });
  const text = renderDispatchReport([failed, skipped], {
    wallMs: 150,
    outputs: [],
    outLink: null,
    dispatcher: { kind: "hook", reason: "--dispatcher hook" },
  });
  assert.match(text, /^broken +local1 +1 +0\.00s +- +0\.10s +- +failed$/m);
  assert.match(text, /^after\?\[2J +- +0 /m);
  assert.match(
    text,
    /^0 built, 0 cached, 0 retried, 1 failed, 1 skipped in 0\.15s, by Nix's build hook \(--dispatcher hook\)\.$/m,
  );
  assert.doesNotMatch(text, /Outputs/);
  const none = renderDispatchReport([], {
    wallMs: 80,
    outputs: ["/nix/store/x"],
    outLink: null,
    dispatcher: { kind: "nixpool", reason: "the default" },
  });
  assert.match(none, /^Nothing to build/);
  assert.match(none, /\nOutputs:\n {2}\/nix\/store\/x$/);
});

test("ties in start order: natural order of names", () => {
  const at = (name: string, startedMs: number | null) => makeRecord({ name, startedMs });
  const names = sortByStart([
    at("leaf-10", 5),
    at("leaf-9", 5),
    at("leaf-1", 5),
    at("zz", 1),
    at("b", null),
    at("a", null),
  ]).map((r) => r.name);
  assert.deepEqual(names, ["zz", "leaf-1", "leaf-9", "leaf-10", "a", "b"]);
  assert.ok(compareNatural("leaf-2", "leaf-10") < 0);
  assert.ok(compareNatural("a10b2", "a10b10") < 0);
  assert.ok(compareNatural("x-007", "x-7") > 0);
  assert.equal(compareNatural("same-1", "same-1"), 0);
  assert.ok(compareNatural("leaf", "leaf-1") < 0);
  assert.ok(compareNatural("99999999999999999999-b", "100000000000000000000-a") < 0);
});
