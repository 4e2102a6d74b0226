import { test } from "node:test";
import assert from "node:assert/strict";
import { snapshotCost } from "../../src/core/cost.js";
import {
  labelValue,
  pickLatestSnapshot,
  planSnapshotGc,
  snapshotLabels,
  snapshotSelector,
  type SnapshotImage,
} from "../../src/core/snapshots.js";

const H = 3_600_000;
const NOW = Date.parse("2026-12-07T12:00:00Z");
const image = (
  id: number,
  o: Partial<SnapshotImage> & { owner?: string; expiresMs?: number; lease?: string } = {},
) => {
  const labels: Record<string, string> = {
    nixpool: "1",
    "nixpool-owner": o.owner ?? "me",
    "nixpool-lease": o.lease ?? `l${id}`,
    "nixpool-expires": String(Math.floor((o.expiresMs ?? NOW + 24 * H) / 1000)),
    "nixpool-arch": o.architecture ?? "x86",
  };
  return {
    id,
    status: "available",
    created: new Date(NOW - (100 - id) * H).toISOString(),
    architecture: "x86",
    disk_size: 40,
    image_size: 1.5,
    ...o,
    labels: o.labels ?? labels,
  };
};

test("snapshot labels: the lease's, the expiry, what it holds; values Hetzner accepts", () => {
  const labels = snapshotLabels({
    owner: "0123456789ab",
    leaseId: "abcdef0123",
    expiresMs: NOW,
    architecture: "arm",
    systemPath: "/nix/store/bp4qp889l4cghf8x6lnjjffmcgybszrq-nixpool-worker-system",
    version: "0.1.0+dev",
    type: "cax21",
  });
  assert.deepEqual(labels, {
    nixpool: "1",
    "nixpool-owner": "0123456789ab",
    "nixpool-lease": "abcdef0123",
    "nixpool-expires": String(NOW / 1000),
    "nixpool-arch": "arm",
    "nixpool-system": "bp4qp889l4cghf8x6lnjjffmcgybszrq-nixpool-worker-system",
    "nixpool-version": "0.1.0_dev",
    "nixpool-type": "cax21",
  });
  for (const v of Object.values(labels))
    assert.match(v, /^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/);
  assert.equal(labelValue(`-${"x".repeat(80)}`), "x".repeat(62));
  assert.equal(snapshotSelector("me", "arm"), "nixpool=1,nixpool-owner=me,nixpool-arch=arm");
});

test("the wake uses this owner's newest available snapshot of the architecture", () => {
  const images = [
    image(1),
    image(2),
    image(3, { status: "creating" }),
    image(4, { owner: "other" }),
    image(5, { architecture: "arm" }),
  ];
  assert.equal(pickLatestSnapshot(images, { owner: "me", architecture: "x86" })?.id, 2);
  assert.equal(pickLatestSnapshot(images, { owner: "me" })?.id, 5);
  assert.equal(pickLatestSnapshot(images, { owner: "nobody" }), undefined);
});

test("gc: expired (anyone's), no expiry and orphaned (mine), past retention per architecture; never one being taken", () => {
  const images = [
    image(1),
    image(2),
    image(3),
    image(4, { architecture: "arm" }),
    image(5, { owner: "other", expiresMs: NOW - H }),
    image(6, { owner: "other" }),
    image(7, { status: "creating" }),
    image(8, { status: "creating", lease: "busy" }),
    image(9, { labels: { nixpool: "1", "nixpool-owner": "me" } }),
    image(10, { expiresMs: NOW - 1 }),
  ];
  const plan = planSnapshotGc({ images, owner: "me", nowMs: NOW, keep: 2, suspending: new Set(["busy"]) });
  assert.deepEqual(
    plan.map((p) => [p.image.id, p.reason]),
    [
      [10, "expired"],
      [9, "no expiry label"],
      [7, "orphaned: its suspend was abandoned"],
      [5, "expired"],
      [1, "past retention"],
    ],
  );
  const keepAll = planSnapshotGc({
    images: images.slice(0, 4),
    owner: "me",
    nowMs: NOW,
    keep: Infinity,
    suspending: new Set(),
  });
  assert.deepEqual(keepAll, []);
});

test("snapshot storage: per GB-month, prorated per started hour, a month's price at most per month begun", () => {
  const perGb = { net: 0.011, gross: 0.01309 };
  const day = snapshotCost(perGb, 2, 0, 24 * H);
  assert.deepEqual(day.monthly, { net: 0.022, gross: 0.02618 });
  assert.equal(day.net, Math.round(((0.022 * 24) / 730) * 1e6) / 1e6);
  assert.equal(snapshotCost(perGb, 2, 0, 730 * H).net, 0.022);
  assert.equal(snapshotCost(perGb, 2, 0, 1).net, Math.round((0.022 / 730) * 1e6) / 1e6);
});
