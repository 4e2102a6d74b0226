import { test } from "node:test";
import assert from "node:assert/strict";
import { buildGraph, remainingPaths, type GraphInput } from "../../src/core/dispatch/graph.js";
import { LOCAL, Scheduler, type SchedulerBuilder } from "../../src/core/dispatch/scheduler.js";
import { builderBackoffMs } from "../../src/core/dispatch/backoff.js";
import { canBuild } from "../../src/core/dispatch/capability.js";

const P = (name: string) => `/nix/store/${"a".repeat(32)}-${name}`;

function drv(name: string, deps: string[] = [], extra: Partial<GraphInput> = {}): GraphInput {
  return {
    drv: P(`${name}.drv`),
    name,
    system: "x86_64-linux",
    features: [],
    outputs: { out: P(name) },
    inputDrvs: Object.fromEntries(deps.map((d) => [P(`${d}.drv`), ["out"]])),
    inputSrcs: [P("builder.sh")],
    ...extra,
  };
}

function builder(name: string, extra: Partial<SchedulerBuilder> = {}): SchedulerBuilder {
  return {
    name,
    maxJobs: 2,
    speedFactor: 1,
    systems: ["x86_64-linux"],
    supportedFeatures: [],
    mandatoryFeatures: [],
    ...extra,
  };
}

const names = (s: Scheduler, as: { drv: string }[]) => as.map((a) => s.node(a.drv).name);

test("graph: edges both ways, input paths, order and cycles", () => {
  const g = buildGraph([drv("a"), drv("b", ["a"]), drv("c", ["a", "b"])], [P("c.drv")]);
  assert.deepEqual(
    g.order.map((d) => g.nodes.get(d)?.name),
    ["a", "b", "c"],
  );
  assert.deepEqual(g.nodes.get(P("a.drv"))?.dependents.sort(), [P("b.drv"), P("c.drv")].sort());
  assert.deepEqual(g.nodes.get(P("c.drv"))?.inputPaths, [P("a"), P("b"), P("builder.sh")].sort());
  assert.throws(() => buildGraph([drv("x", ["y"]), drv("y", ["x"])], [P("x.drv")]), /cycle/);
  assert.throws(() => buildGraph([drv("x", ["missing"])], [P("x.drv")]), /not in the derivation closure/);
  assert.throws(
    () => buildGraph([drv("a"), { ...drv("b"), inputDrvs: { [P("a.drv")]: ["dev"] } }], [P("b.drv")]),
    /output "dev"/,
  );
});

test("graph: remaining critical path counts the longest chain above a derivation", () => {
  const g = buildGraph(
    [drv("a"), drv("b", ["a"]), drv("c", ["b"]), drv("x"), drv("root", ["c", "x"])],
    [P("root.drv")],
  );
  const rp = remainingPaths(g, () => 1);
  assert.equal(rp.get(P("a.drv")), 4);
  assert.equal(rp.get(P("x.drv")), 2);
  assert.equal(rp.get(P("root.drv")), 1);
});

test("plan: outputs valid here or on a builder are not built, nor are their inputs", () => {
  const g = buildGraph([drv("a"), drv("b", ["a"]), drv("c", ["b"]), drv("d")], [P("c.drv"), P("d.drv")]);
  const s = new Scheduler(g, [builder("b1")]);
  s.addLocation(P("b.drv"), "b1");
  s.addLocation(P("d.drv"), LOCAL);
  s.plan(0);
  assert.equal(s.state(P("a.drv")).status, "idle");
  assert.equal(s.state(P("b.drv")).status, "done");
  assert.equal(s.state(P("b.drv")).outcome, "cached");
  assert.equal(s.state(P("c.drv")).status, "ready");
  assert.equal(s.state(P("d.drv")).status, "done");
  assert.deepEqual(s.unfinished(), [P("c.drv")]);
});

test("assign: longest remaining path first, only into open slots, dependents after their inputs", () => {
  const g = buildGraph(
    [
      drv("a"),
      drv("b", ["a"]),
      drv("c", ["b"]),
      drv("leaf-2"),
      drv("leaf-10"),
      drv("root", ["c", "leaf-2", "leaf-10"]),
    ],
    [P("root.drv")],
  );
  const s = new Scheduler(g, [builder("b1", { maxJobs: 2 })]);
  s.plan(0);
  assert.deepEqual(s.assign(), [], "no slot is open yet");
  s.builderUp("b1", 1);
  assert.deepEqual(names(s, s.assign()), ["a"]);
  s.builderUp("b1", 2);
  assert.deepEqual(names(s, s.assign()), ["leaf-2"], "natural order among equals");
  s.finish(P("a.drv"), { kind: "built" }, 10);
  assert.deepEqual(names(s, s.assign()), ["b"]);
  assert.equal(s.state(P("a.drv")).locations.has("b1"), true);
});

test("capability follows Nix: system, supported and mandatory features", () => {
  const b = builder("k", { supportedFeatures: ["kvm"], mandatoryFeatures: ["big"] });
  assert.equal(canBuild(b, { system: "x86_64-linux", features: ["big"] }), true);
  assert.equal(canBuild(b, { system: "x86_64-linux", features: ["big", "kvm"] }), true);
  assert.equal(
    canBuild(b, { system: "x86_64-linux", features: [] }),
    false,
    "mandatory feature not required",
  );
  assert.equal(canBuild(b, { system: "x86_64-linux", features: ["big", "cuda"] }), false);
  assert.equal(canBuild(b, { system: "aarch64-linux", features: ["big"] }), false);
  assert.equal(canBuild({ ...b, maxJobs: 0 }, { system: "x86_64-linux", features: ["big"] }), false);
  // builtin:fetchurl and friends (system "builtin") run on any machine, as Nix's Machine::systemSupported says.
  assert.equal(canBuild(builder("plain"), { system: "builtin", features: [] }), true);
  assert.equal(canBuild(b, { system: "builtin", features: [] }), false, "mandatory feature not required");

  const g = buildGraph(
    [drv("plain"), drv("needs-kvm", [], { features: ["kvm"] }), drv("needs-gpu", [], { features: ["gpu"] })],
    [P("plain.drv"), P("needs-kvm.drv"), P("needs-gpu.drv")],
  );
  const s = new Scheduler(g, [builder("b1"), builder("b2", { supportedFeatures: ["kvm"] })]);
  s.plan(0);
  assert.deepEqual(s.incapable(), [P("needs-gpu.drv")]);
  s.builderUp("b1", 2);
  const first = s.assign();
  assert.deepEqual(names(s, first), ["plain"], "the kvm derivation waits for b2");
  s.builderUp("b2", 2);
  assert.deepEqual(s.assign(), [{ drv: P("needs-kvm.drv"), builder: "b2" }]);
});

test("assign prefers the builder that already holds the inputs", () => {
  const g = buildGraph([drv("a"), drv("b", ["a"])], [P("b.drv")]);
  const s = new Scheduler(g, [builder("b1"), builder("b2")]);
  s.addLocation(P("a.drv"), "b2");
  s.plan(0);
  s.builderUp("b1", 2);
  s.builderUp("b2", 2);
  assert.deepEqual(s.assign(), [{ drv: P("b.drv"), builder: "b2" }]);
});

test("failures: transient retried elsewhere, permanent skips dependents and stops unless keep-going", () => {
  const mk = (keepGoing: boolean) => {
    const g = buildGraph([drv("bad"), drv("ok"), drv("top", ["bad"])], [P("top.drv"), P("ok.drv")]);
    const s = new Scheduler(g, [builder("b1", { maxJobs: 1 }), builder("b2", { maxJobs: 1 })], { keepGoing });
    s.plan(0);
    s.builderUp("b1", 1);
    s.builderUp("b2", 1);
    return s;
  };
  const s = mk(false);
  const first = s.assign();
  const badOn = first.find((a) => a.drv === P("bad.drv"))?.builder as string;
  s.finish(P("bad.drv"), { kind: "failed", transient: true, message: "MiscFailure" }, 1);
  assert.equal(s.state(P("bad.drv")).status, "ready");
  const okOn = first.find((a) => a.drv === P("ok.drv"))?.builder as string;
  s.finish(P("ok.drv"), { kind: "built" }, 2);
  const again = s.assign();
  assert.deepEqual(again, [{ drv: P("bad.drv"), builder: okOn === badOn ? badOn : okOn }]);
  assert.notEqual(again[0]?.builder, badOn, "the retry goes to the builder it did not fail on");
  s.finish(P("bad.drv"), { kind: "failed", transient: false, message: "PermanentFailure" }, 3);
  assert.equal(s.state(P("bad.drv")).status, "failed");
  assert.equal(s.state(P("top.drv")).status, "skipped");
  assert.equal(s.stopping, true);
  assert.deepEqual(s.assign(), []);

  const k = mk(true);
  k.assign();
  k.finish(P("bad.drv"), { kind: "failed", transient: false, message: "PermanentFailure" }, 1);
  assert.equal(k.stopping, false);
  assert.equal(k.state(P("top.drv")).status, "skipped");
});

test("a lost builder: its work is tried elsewhere, outputs only it held are rebuilt, backoff grows", () => {
  const g = buildGraph([drv("a"), drv("b", ["a"]), drv("c", ["b"])], [P("c.drv")]);
  const s = new Scheduler(g, [builder("b1"), builder("b2")], { backoffBaseMs: 100 });
  s.plan(0);
  s.builderUp("b1", 2);
  const [first] = s.assign();
  assert.equal(first?.builder, "b1");
  s.finish(P("a.drv"), { kind: "built" }, 5);
  assert.deepEqual(s.assign(), [{ drv: P("b.drv"), builder: "b1" }]);
  s.builderUp("b2", 2);
  s.builderDown("b1", "connection lost", 10);
  s.finish(P("b.drv"), { kind: "lost", message: "builder b1 was lost" }, 10);
  // a's output was only on b1 and b still needs it: a is needed again, b waits for it.
  assert.equal(s.state(P("a.drv")).status, "ready");
  assert.equal(s.state(P("b.drv")).status, "waiting");
  assert.equal(s.state(P("b.drv")).attempts, 1);
  assert.deepEqual(s.assign(), [{ drv: P("a.drv"), builder: "b2" }]);
  assert.equal(s.builders.get("b1")?.downUntilMs, 110);
  assert.deepEqual(s.reconnectable(50), []);
  assert.deepEqual(s.reconnectable(110), ["b1"]);
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((n) => builderBackoffMs(n)),
    [60_000, 180_000, 540_000, 1_620_000, 1_620_000],
  );
});

test("a derivation is tried at most maxAttempts times", () => {
  const g = buildGraph([drv("flaky")], [P("flaky.drv")]);
  const s = new Scheduler(g, [builder("b1", { maxJobs: 1 })], { maxAttempts: 3 });
  s.plan(0);
  s.builderUp("b1", 1);
  for (let i = 0; i < 3; i++) {
    assert.equal(s.assign().length, 1);
    s.finish(P("flaky.drv"), { kind: "failed", transient: true, message: "TransientFailure" }, i);
  }
  assert.equal(s.state(P("flaky.drv")).status, "failed");
  assert.match(s.state(P("flaky.drv")).error ?? "", /gave up after 3 tries/);
});

test("stuck: ready work that no builder now up can take", () => {
  const g = buildGraph([drv("a")], [P("a.drv")]);
  const s = new Scheduler(g, [builder("b1")]);
  s.plan(0);
  assert.deepEqual(s.stuck(), [P("a.drv")]);
  s.builderUp("b1", 2);
  assert.deepEqual(s.stuck(), []);
  s.builderDown("b1", "gone", 0);
  assert.deepEqual(s.stuck(), [P("a.drv")]);
});
