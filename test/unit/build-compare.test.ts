import { test } from "node:test";
import assert from "node:assert/strict";
import { findDifference, notReproducibleError } from "../../src/core/dispatch/build-compare.js";
import { renderDispatchReport } from "../../src/cli/build-report.js";
import { toJsonRecord } from "../../src/core/build-record.js";
import { attemptSpans, makeRecord } from "../helpers/build-records.js";

const H1 = `sha256:${"1".repeat(52)}`;
const H2 = `sha256:${"2".repeat(52)}`;
const t1 = { builder: "t1", trust: "trusted" as const, narHashes: { out: H1, dev: H1 } };
const u1 = { builder: "u1", trust: "untrusted" as const, narHashes: { out: H1, dev: H2 } };

test("findDifference: the first output (by name) whose hash differs from the first build", () => {
  assert.equal(findDifference([], t1), undefined);
  assert.equal(findDifference([t1], { ...t1, builder: "t2" }), undefined);
  assert.deepEqual(findDifference([t1], u1), { output: "dev", first: t1, second: u1 });
  assert.equal(
    findDifference([t1], { ...u1, narHashes: { out: H1 } })?.output,
    "dev",
    "a missing output differs",
  );
});

test("NOT_REPRODUCIBLE names the derivation, both builders and hashes, and the diff command", () => {
  const diff = findDifference([u1], t1);
  assert.ok(diff);
  const e = notReproducibleError(
    "hello",
    "/nix/store/x-hello.drv",
    diff,
    { dir: "/s/trust/differ/x-hello", trees: { t1: { dev: "/k/t1/dev" }, u1: { dev: "/k/u1/dev" } } },
    "diff -r",
  );
  assert.equal(e.code, "NOT_REPRODUCIBLE");
  assert.equal(
    e.message,
    `Builds of hello differ: output dev has NAR hash ${H2} on u1 (untrusted) and ${H1} on t1 (trusted); both outputs are kept in /s/trust/differ/x-hello. The output of untrusted builder u1 was not accepted.`,
  );
  assert.equal(e.hint, "See the difference with: diff -r /k/u1/dev /k/t1/dev");
  const partial = notReproducibleError(
    "hello",
    "/d",
    diff,
    { dir: "/k", trees: { t1: { dev: "/k/t1/dev" } } },
    "diffoscope",
  );
  assert.match(partial.message, /what could be fetched is kept in \/k\./);
  assert.equal(partial.hint, "List what was kept with: ls -R /k");
});

test("report and --json: the trust of each builder, and verified derivations", () => {
  const plain = renderDispatchReport([makeRecord({ name: "a", builder: "t1", trust: "trusted" })], {
    wallMs: 10,
    outputs: [],
    outLink: null,
    dispatcher: { kind: "nixpool", reason: "the default" },
  });
  assert.doesNotMatch(plain, /TRUST/, "a trusted-only pool without checks keeps the table as it was");
  const records = [
    makeRecord({
      name: "a",
      builder: "u1",
      trust: "untrusted",
      spans: attemptSpans("u1", 1, 0, { build: 10 }),
    }),
    makeRecord({
      name: "b",
      builder: "t1",
      trust: "trusted",
      builds: [u1, t1],
      verified: true,
      spans: attemptSpans("t1", 1, 20, { build: 10 }),
    }),
    makeRecord({ name: "c", status: "cached", builder: null, readyMs: null }),
  ];
  const text = renderDispatchReport(records, {
    wallMs: 40,
    outputs: [],
    outLink: null,
    dispatcher: { kind: "nixpool", reason: "the default" },
  });
  assert.match(text, /STATUS +TRUST$/m);
  assert.match(text, /^a +u1 .* built +untrusted$/m);
  assert.match(text, /^b +t1 .* built +trusted, verified on 2 builders$/m);
  assert.match(text, /^c +- .* cached +-$/m);
  const j = toJsonRecord(records[1] as (typeof records)[number], 0);
  assert.equal(j.trust, "trusted");
  assert.equal(j.verified, true);
  assert.deepEqual(j.builds, [u1, t1]);
  const cached = toJsonRecord(records[2] as (typeof records)[number], 0);
  assert.deepEqual([cached.trust, cached.verified, cached.builds], [null, false, []]);
});
