import { test } from "node:test";
import assert from "node:assert/strict";
import { phaseTotals, splitAttempts, summarizeRecords, toJsonRecord } from "../../src/core/build-record.js";
import { attemptSpans, makeRecord } from "../helpers/build-records.js";

test("phase totals of one attempt: queued from ready to the first span, each phase summed", () => {
  const r = makeRecord({
    name: "leaf-1",
    readyMs: 100,
    spans: attemptSpans("local1", 1, 250, { upload: 40, build: 500, download: 30 }),
  });
  assert.deepEqual(phaseTotals(r), { queuedMs: 150, uploadMs: 40, buildMs: 500, downloadMs: 30 });
});

test("a retried derivation: queued again from the failed attempt's end to the next start", () => {
  const r = makeRecord({
    name: "leaf-2",
    readyMs: 0,
    attempts: 2,
    retries: [{ builder: "local2", reason: "builder local2 lost the connection" }],
    spans: [
      ...attemptSpans("local2", 1, 10, { upload: 20, build: 100 }), // ends at 130
      ...attemptSpans("local1", 2, 200, { upload: 20, build: 300, download: 10 }),
    ],
  });
  const attempts = splitAttempts(r);
  assert.equal(attempts.length, 2);
  assert.deepEqual(
    attempts.map((a) => a.map((s) => `${s.builder}#${s.slot}:${s.phase}`)),
    [
      ["local2#1:upload", "local2#1:build"],
      ["local1#2:upload", "local1#2:build", "local1#2:download"],
    ],
  );
  assert.deepEqual(phaseTotals(r), { queuedMs: 10 + 70, uploadMs: 40, buildMs: 400, downloadMs: 10 });
});

test("a retry on the same slot is a new attempt when the phases start over", () => {
  const r = makeRecord({
    name: "flaky",
    spans: [
      ...attemptSpans("local1", 1, 0, { build: 50 }),
      ...attemptSpans("local1", 1, 80, { build: 60, download: 5 }),
    ],
  });
  assert.equal(splitAttempts(r).length, 2);
  assert.equal(phaseTotals(r).queuedMs, 30);
});

test("spans given out of order are sorted before they are split", () => {
  const spans = attemptSpans("b", 1, 0, { upload: 10, build: 10, download: 10 }).reverse();
  assert.equal(splitAttempts(makeRecord({ name: "x", spans })).length, 1);
});

test("cached and never-started derivations", () => {
  const cached = makeRecord({
    name: "c",
    status: "cached",
    readyMs: null,
    startedMs: null,
    finishedMs: null,
  });
  assert.deepEqual(phaseTotals(cached), { queuedMs: 0, uploadMs: 0, buildMs: 0, downloadMs: 0 });
  // Skipped after waiting 400 ms for a slot, when the build stopped.
  const skipped = makeRecord({ name: "s", status: "skipped", readyMs: 100, finishedMs: 500 });
  assert.equal(phaseTotals(skipped).queuedMs, 400);
});

test("--json record: ISO 8601 times from the build's start, phase totals, retries", () => {
  const r = makeRecord({
    name: "leaf-1",
    builder: "local1",
    slot: 1,
    readyMs: 0,
    attempts: 2,
    retries: [{ builder: "local2", reason: "builder local2 lost the connection" }],
    spans: [
      ...attemptSpans("local2", 1, 500, { build: 100 }),
      ...attemptSpans("local1", 1, 700, { upload: 100, build: 1000, download: 250 }),
    ],
  });
  const j = toJsonRecord(r, Date.UTC(2026, 10, 30, 12, 0, 0));
  assert.equal(j.startedAt, "2026-11-30T12:00:00.500Z");
  assert.equal(j.finishedAt, "2026-11-30T12:00:02.050Z");
  assert.equal(j.builder, "local1");
  assert.equal(j.attempts, 2);
  assert.deepEqual([j.queuedMs, j.uploadMs, j.buildMs, j.downloadMs], [500 + 100, 100, 1100, 250]);
  assert.deepEqual(j.retries, [{ builder: "local2", reason: "builder local2 lost the connection" }]);
  // Plain data: survives JSON unchanged, and shares nothing with the record.
  assert.deepEqual(JSON.parse(JSON.stringify(j)), j);
  j.spans[0]!.endMs = -1;
  assert.equal(r.spans[0]?.endMs, 600);
  const queued = toJsonRecord(makeRecord({ name: "q", status: "queued" }), 0);
  assert.equal(queued.startedAt, null);
  assert.equal(queued.finishedAt, null);
});

test("a snapshot from records: counts, and each builder's running derivations by slot", () => {
  const running = (name: string, builder: string, slot: number) =>
    makeRecord({ name, status: "running", builder, slot, finishedMs: null });
  const s = summarizeRecords(
    [
      makeRecord({ name: "a" }),
      makeRecord({ name: "b", status: "cached" }),
      running("c", "local1", 2),
      running("d", "local1", 1),
      makeRecord({ name: "e", status: "queued" }),
      makeRecord({ name: "f", status: "failed" }),
      makeRecord({ name: "g", status: "skipped" }),
    ],
    [
      { name: "local1", slots: 2, state: "up" },
      { name: "local2", slots: 2, state: "down" },
    ],
    1234,
  );
  assert.deepEqual(s, {
    elapsedMs: 1234,
    total: 7,
    done: 2,
    running: 2,
    queued: 1,
    failed: 1,
    builders: [
      {
        name: "local1",
        slots: 2,
        state: "up",
        running: [
          { slot: 1, name: "d" },
          { slot: 2, name: "c" },
        ],
      },
      { name: "local2", slots: 2, state: "down", running: [] },
    ],
  });
});
