import { test } from "node:test";
import assert from "node:assert/strict";
import { compareNatural } from "../../src/core/natural-order.js";

test("natural order: numbers by value, the rest by code point, total and stable", () => {
  const names = [
    "leaf-10",
    "graph-root",
    "leaf-2",
    "leaf-1",
    "leaf-0",
    "leaf-11",
    "leaf-02",
    "leaf-",
    "b",
    "a10b",
    "a9c",
  ];
  assert.deepEqual([...names].sort(compareNatural), [
    "a9c",
    "a10b",
    "b",
    "graph-root",
    "leaf-",
    "leaf-0",
    "leaf-1",
    "leaf-2",
    "leaf-02",
    "leaf-10",
    "leaf-11",
  ]);
  assert.equal(compareNatural("x", "x"), 0);
  assert.ok(compareNatural("n99999999999999999999", "n100000000000000000000") < 0);
});
