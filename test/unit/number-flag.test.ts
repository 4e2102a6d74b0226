import { test } from "node:test";
import assert from "node:assert/strict";
import { parseNumberFlag } from "../../src/core/number-flag.js";
import { isNixpoolError } from "../../src/core/errors.js";

test("numeric flags are parsed within their bounds", () => {
  assert.equal(parseNumberFlag("--jobs", "4", { integer: true, min: 1, example: "x" }), 4);
  assert.equal(parseNumberFlag("--timeout", "0.5", { min: 0.1, max: 3600, example: "x" }), 0.5);
  assert.equal(parseNumberFlag("--port", "0", { integer: true, min: 0, example: "x" }), 0);
});

test("a bad value names the flag, the bounds and an example, and is a usage error", () => {
  for (const [value, o, message] of [
    ["x", { integer: true, min: 1, max: 64 }, /--n must be a whole number from 1 to 64, not "x"/],
    ["2.5", { integer: true, min: 1 }, /--n must be a whole number ≥ 1/],
    ["", { min: 0 }, /--n must be a number ≥ 0, not ""/],
    ["0", { positive: true }, /--n must be a positive number/],
    ["99", { max: 10 }, /--n must be a number ≤ 10/],
  ] as const) {
    assert.throws(
      () => parseNumberFlag("--n", value, { ...o, example: "nixpool x --n 2" }),
      (e: unknown) =>
        isNixpoolError(e) &&
        e.exitCode === 2 &&
        message.test(e.message) &&
        e.hint === "For example: nixpool x --n 2",
    );
  }
});
