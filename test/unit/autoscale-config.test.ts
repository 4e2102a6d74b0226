import { test } from "node:test";
import assert from "node:assert/strict";
import { parseInventory } from "../../src/config/inventory-parse.js";
import { toAutoscaleConfig } from "../../src/config/autoscale-schema.js";
import { isNixpoolError } from "../../src/core/errors.js";

const parse = (body: string) => {
  const file = parseInventory(`[autoscale.hetzner]\n${body}`, "inv.toml");
  const a = file.autoscale?.hetzner;
  assert.ok(a);
  return toAutoscaleConfig(a);
};

/** The problems CONFIG_INVALID lists for `[autoscale.hetzner]` with `body`. */
const problems = (body: string): string[] => {
  try {
    parseInventory(`[autoscale.hetzner]\n${body}`, "inv.toml");
  } catch (e) {
    assert.ok(isNixpoolError(e) && e.code === "CONFIG_INVALID", String(e));
    return (e.details as { problems: string[] }).problems;
  }
  return assert.fail("expected CONFIG_INVALID");
};

test("[autoscale.hetzner]: maxWorkers alone, every other key with its default", () => {
  assert.deepEqual(parse("maxWorkers = 3\n"), {
    minWorkers: 0,
    maxWorkers: 3,
    serverTypes: "auto",
    location: "fsn1",
    image: "debian-12",
    minCores: 2,
    minMemory: 2,
    derivationsPerWorker: 8,
    scaleUpAfterMs: 30_000,
    minLifetimeMs: 600_000,
    releaseMarginMs: 300_000,
    intervalMs: 15_000,
    bootTimeoutMs: 600_000,
    fromSnapshot: "latest",
    suspendIdle: false,
    budget: {},
  });
});

test("[autoscale.hetzner]: every key set, durations by the one syntax", () => {
  const c = parse(
    [
      "minWorkers = 1",
      "maxWorkers = 4",
      'serverTypes = ["cx33", "cax21"]',
      'location = "nbg1"',
      'image = "debian-13"',
      "derivationsPerWorker = 5",
      'scaleUpAfter = "1m30s"',
      'minLifetime = "50m"',
      'releaseMargin = "2m"',
      'interval = "5s"',
      'bootTimeout = "15m"',
      "suspendIdle = true",
      "budget = { hour = 1, day = 5.0, month = 40 }",
      "",
    ].join("\n"),
  );
  assert.deepEqual(c.serverTypes, ["cx33", "cax21"]);
  assert.equal(c.scaleUpAfterMs, 90_000);
  assert.equal(c.minLifetimeMs, 3_000_000);
  assert.equal(c.releaseMarginMs, 120_000);
  assert.equal(c.intervalMs, 5000);
  assert.deepEqual(c.budget, { hour: 1, day: 5, month: 40 });
  assert.equal(c.suspendIdle, true);
});

test("[autoscale.hetzner]: each error names its key", () => {
  assert.deepEqual(problems("minWorkers = 0\n"), ["autoscale.hetzner.maxWorkers: must be a number"]);
  assert.deepEqual(problems("maxWorkers = 2\nminWorkers = 3\n"), [
    "autoscale.hetzner.minWorkers: must be ≤ maxWorkers (2)",
  ]);
  assert.deepEqual(problems('maxWorkers = 2\nscaleUpAfter = "soon"\n'), [
    'autoscale.hetzner.scaleUpAfter: "soon" is not a duration such as 30s, 10m or 1h',
  ]);
  assert.deepEqual(problems("maxWorkers = 2\nbudget = { day = -1 }\n"), [
    "autoscale.hetzner.budget.day: must be ≥ 0",
  ]);
  assert.deepEqual(problems("maxWorkers = 2\nbudget = { week = 1 }\n"), [
    "autoscale.hetzner.budget: unknown field week",
  ]);
  assert.deepEqual(problems('maxWorkers = 2\nserverTypes = "cheap"\n'), [
    'autoscale.hetzner.serverTypes: must be "auto" or a list of server types such as ["cx33", "cax21"]',
  ]);
  assert.deepEqual(problems('maxWorkers = 2\nreleaseMargin = "1h"\n'), [
    "autoscale.hetzner.releaseMargin: must be shorter than 1h (a billed hour)",
  ]);
  assert.deepEqual(problems('maxWorkers = 2\nreleaseMargin = "0s"\n'), [
    "autoscale.hetzner.releaseMargin: must be at least 30s",
  ]);
  assert.deepEqual(problems("maxWorkers = 2\nmaxWorkerz = 3\n"), [
    "autoscale.hetzner: unknown field maxWorkerz",
  ]);
  assert.deepEqual(problems("maxWorkers = 1.5\n"), ["autoscale.hetzner.maxWorkers: must be an integer"]);
  assert.deepEqual(problems('maxWorkers = 2\nsuspendIdle = "yes"\n'), [
    "autoscale.hetzner.suspendIdle: must be true or false",
  ]);
});
