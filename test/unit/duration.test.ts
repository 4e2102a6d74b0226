import { test } from "node:test";
import assert from "node:assert/strict";
import { parseDuration, readDurationFlag, type DurationFlag } from "../../src/core/duration.js";

test("one duration syntax: NUMBER UNIT terms, units ms s m h d w", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("90s"), 90_000);
  assert.equal(parseDuration("5m"), 300_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("2d"), 172_800_000);
  assert.equal(parseDuration("2w"), 1_209_600_000);
  assert.equal(parseDuration("1.5h"), 5_400_000);
  assert.equal(parseDuration("1m30s500ms"), 90_500);
  assert.equal(parseDuration(" 7d "), 604_800_000);
  for (const bad of ["", "15", "7 days", "1h 30m", "-1h", "h", "1x", "1h1h", "1.h", "+8h", "1e3s"]) {
    assert.equal(parseDuration(bad), undefined, bad);
  }
});

const flag = (bare: DurationFlag["bare"], over: Partial<DurationFlag> = {}): DurationFlag => ({
  flag: "--x",
  bare,
  example: "nixpool x --x 5s",
  ...over,
});

test("a bare number: seconds by the convention, a legacy unit with a note, or refused", () => {
  assert.deepEqual(readDurationFlag("20", flag("seconds")), { ms: 20_000 });
  assert.deepEqual(readDurationFlag("0.5", flag("seconds")), { ms: 500 });
  const minutes = readDurationFlag("15", flag({ legacyUnit: "m" }, { flag: "--ttl" }));
  assert.equal(minutes.ms, 900_000);
  assert.equal(
    minutes.warning,
    "warning: --ttl 15 is read as 15m (minutes), as before; a bare number will mean seconds in a later release: write 15m.",
  );
  const millis = readDurationFlag("2000", flag({ legacyUnit: "ms" }, { flag: "--timeout" }));
  assert.equal(millis.ms, 2000);
  assert.match(millis.warning ?? "", /--timeout 2000 is read as 2000ms \(milliseconds\).*write 2s\.$/);
  assert.throws(
    () => readDurationFlag("7", flag("refuse", { flag: "--max-age" })),
    (e: { code?: string; exitCode?: number; message?: string }) =>
      e.code === "DURATION_INVALID" && e.exitCode === 2 && /--max-age "7" has no unit/.test(e.message ?? ""),
  );
});

test("with a unit every flag reads the same, without a note; bounds and errors name the flag", () => {
  for (const bare of ["seconds", "refuse", { legacyUnit: "m" }, { legacyUnit: "ms" }] as const) {
    assert.deepEqual(readDurationFlag("1h30m", flag(bare)), { ms: 5_400_000 });
  }
  const bounded = flag("seconds", { minMs: 100, maxMs: 3_600_000 });
  assert.throws(() => readDurationFlag("50ms", bounded), /--x "50ms" is shorter than 100ms/);
  assert.throws(() => readDurationFlag("2h", bounded), /--x "2h" is longer than 1h/);
  assert.throws(
    () => readDurationFlag("soon", bounded),
    (e: { code?: string; hint?: string }) =>
      e.code === "DURATION_INVALID" && /nixpool x --x 5s/.test(e.hint ?? ""),
  );
});
