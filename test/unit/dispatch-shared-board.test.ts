import { test } from "node:test";
import assert from "node:assert/strict";
import { buildGraph, type GraphInput } from "../../src/core/dispatch/graph.js";
import { Scheduler, type SchedulerBuilder } from "../../src/core/dispatch/scheduler.js";
import { BuilderBoard } from "../../src/core/dispatch/builder-board.js";
import { pickFairly, type FairShareCandidate } from "../../src/core/dispatch/fair-share.js";

// Several builds on one board of slots: what the long-lived dispatcher (nixpool serve) relies on.

const P = (name: string) => `/nix/store/${"b".repeat(32)}-${name}`;

function drv(name: string, deps: string[] = []): GraphInput {
  return {
    drv: P(`${name}.drv`),
    name,
    system: "x86_64-linux",
    features: [],
    outputs: { out: P(name) },
    inputDrvs: Object.fromEntries(deps.map((d) => [P(`${d}.drv`), ["out"]])),
    inputSrcs: [],
  };
}

function builder(name: string, maxJobs = 2): SchedulerBuilder {
  return {
    name,
    maxJobs,
    speedFactor: 1,
    systems: ["x86_64-linux"],
    supportedFeatures: [],
    mandatoryFeatures: [],
  };
}

/** A build of `n` independent leaves under one root, named with `prefix`. */
function wide(board: BuilderBoard, prefix: string, n: number): Scheduler {
  const leaves = Array.from({ length: n }, (_, i) => drv(`${prefix}${i}`));
  const root = drv(
    `${prefix}root`,
    leaves.map((l) => l.name),
  );
  const s = new Scheduler(buildGraph([...leaves, root], [root.drv]), board);
  s.plan(0);
  return s;
}

test("two builds on one board never take more slots than the builders have", () => {
  const board = new BuilderBoard([builder("b1"), builder("b2")]);
  board.up("b1", 2);
  board.up("b2", 2);
  const a = wide(board, "a", 10);
  const b = wide(board, "b", 10);
  const first = a.assign();
  assert.equal(first.length, 4, "the first build takes every free slot");
  assert.deepEqual(b.assign(), [], "none left for the second");
  assert.equal(board.freeSlots(), 0);
  a.finish(first[0]?.drv as string, { kind: "built" }, 1);
  const second = b.assign();
  assert.equal(second.length, 1, "a freed slot goes to whoever asks next");
  assert.equal(second[0]?.builder, first[0]?.builder);
  for (const bs of board.builders.values())
    assert.ok(bs.running <= bs.slots, `${bs.info.name} over its slots`);
  assert.equal(a.running, 3);
  assert.equal(b.running, 1);
});

test("assign takes at most `max`, and leaves ready what `skip` names", () => {
  const board = new BuilderBoard([builder("b1", 4)]);
  board.up("b1", 4);
  const a = wide(board, "a", 3);
  const skipped = P("a0.drv");
  const one = a.assign({ max: 1, skip: (d) => d === skipped });
  assert.equal(one.length, 1);
  assert.notEqual(one[0]?.drv, skipped);
  const rest = a.assign({ skip: (d) => d === skipped });
  assert.equal(rest.length, 1, "the skipped one stays ready");
  assert.equal(a.state(skipped).status, "ready");
  assert.deepEqual(
    a.assign().map((x) => x.drv),
    [skipped],
  );
});

test("a derivation another build built counts as found built, and its dependents become ready", () => {
  const board = new BuilderBoard([builder("b1")]);
  board.up("b1", 2);
  const shared = drv("shared");
  const top = drv("top", ["shared"]);
  const s = new Scheduler(buildGraph([shared, top], [top.drv]), board);
  s.plan(0);
  assert.equal(s.state(shared.drv).status, "ready");
  s.builtElsewhere(shared.drv, "b1", 5);
  assert.equal(s.state(shared.drv).status, "done");
  assert.equal(s.state(shared.drv).outcome, "cached");
  assert.ok(s.state(shared.drv).locations.has("b1"));
  assert.equal(s.state(top.drv).status, "ready");
  s.builtElsewhere(P("unknown.drv"), "b1", 5);
});

test("a builder down on the shared board: each build learns what it lost, the board backs off once", () => {
  const board = new BuilderBoard([builder("b1"), builder("b2")], 100);
  board.up("b1", 2);
  board.up("b2", 2);
  const a = wide(board, "a", 1);
  const b = wide(board, "b", 1);
  const [ra] = a.assign();
  const [rb] = b.assign();
  a.finish(ra?.drv as string, { kind: "built" }, 1);
  b.finish(rb?.drv as string, { kind: "built" }, 1);
  assert.equal(board.down(ra?.builder as string, "gone", 10), true);
  assert.equal(board.down(ra?.builder as string, "gone again", 11), false, "one loss, one backoff");
  a.lostOutputsOn(ra?.builder as string, 10);
  assert.equal(a.state(ra?.drv as string).status, "ready", "built again: its outputs were only there");
  assert.deepEqual(board.reconnectable(50), []);
  assert.deepEqual(board.reconnectable(110), [ra?.builder]);
  board.probeFailed(ra?.builder as string, "still gone", 110);
  assert.deepEqual(board.reconnectable(300), [], "a failed probe waits 3 × the base");
  assert.deepEqual(board.reconnectable(410), [ra?.builder]);
});

const cand = (client: string, running: number, seq: number, topPriority = 1): FairShareCandidate => ({
  client,
  running,
  seq,
  topPriority,
});

test("fair share: the client with fewer running first, then the build with fewer, then critical path, then age", () => {
  const big = cand("alice", 4, 1, 100);
  const small = cand("bob", 0, 2, 1);
  assert.equal(pickFairly([big, small]), small, "a small build after a big one is not starved");
  const aliceA = cand("alice", 1, 1);
  const aliceB = cand("alice", 0, 2);
  const carol = cand("carol", 1, 3);
  assert.equal(
    pickFairly([aliceA, aliceB, carol]),
    aliceB,
    "alice and carol run 1 each: then the build running fewer",
  );
  const dave = cand("dave", 0, 4);
  assert.equal(pickFairly([aliceA, aliceB, carol, dave]), dave, "a client running nothing comes first");
  assert.equal(pickFairly([aliceA, aliceB]), aliceB, "one client: its build with fewer running");
  const urgent = cand("alice", 0, 5, 9);
  const calm = cand("bob", 0, 4, 2);
  assert.equal(pickFairly([calm, urgent]), urgent, "equal shares: the longer critical path");
  assert.equal(pickFairly([cand("a", 0, 7), cand("b", 0, 6)])?.seq, 6, "then the earlier build");
  assert.equal(pickFairly([]), undefined);
  const byClient = new Map([
    ["alice", 0],
    ["bob", 3],
  ]);
  assert.equal(
    pickFairly([cand("alice", 0, 2), cand("bob", 0, 1)], byClient)?.client,
    "alice",
    "counts over every build of a client",
  );
});

test("a build limited to some builders takes slots only there, and is incapable without them", () => {
  const board = new BuilderBoard([builder("b1"), builder("b2")]);
  board.up("b1", 2);
  board.up("b2", 2);
  const leaves = [drv("x0"), drv("x1"), drv("x2")];
  const s = new Scheduler(
    buildGraph(
      leaves,
      leaves.map((l) => l.drv),
    ),
    board,
    { only: new Set(["b2"]) },
  );
  s.plan(0);
  const got = s.assign();
  assert.deepEqual(
    got.map((a) => a.builder),
    ["b2", "b2"],
  );
  assert.equal(board.freeSlots(), 2, "b1's slots stay free for other builds");
  const none = new Scheduler(
    buildGraph(
      leaves,
      leaves.map((l) => l.drv),
    ),
    board,
    { only: new Set(["gone"]) },
  );
  none.plan(0);
  assert.equal(none.incapable().length, 3);
});
