import { test } from "node:test";
import assert from "node:assert/strict";
import { buildGraph, type GraphInput } from "../../src/core/dispatch/graph.js";
import { Scheduler, type SchedulerBuilder } from "../../src/core/dispatch/scheduler.js";
import { trustPlacement } from "../../src/core/dispatch/placement.js";
import {
  DEFAULT_TRUST_POLICY,
  isSettled,
  matchesGlob,
  mayBuildOn,
  maySendFrom,
  verifyRoundsFor,
  type TrustPolicy,
} from "../../src/core/dispatch/trust-policy.js";
import { findTrustShortfalls, trustShortfallError } from "../../src/core/dispatch/trust-check.js";

const P = (name: string) => `/nix/store/${"a".repeat(32)}-${name}`;
const drv = (name: string, deps: string[] = []): GraphInput => ({
  drv: P(`${name}.drv`),
  name,
  system: "x86_64-linux",
  features: [],
  outputs: { out: P(name) },
  inputDrvs: Object.fromEntries(deps.map((d) => [P(`${d}.drv`), ["out"]])),
  inputSrcs: [],
});
const builder = (name: string, trust: "trusted" | "untrusted", maxJobs = 1): SchedulerBuilder => ({
  name,
  maxJobs,
  speedFactor: 1,
  systems: ["x86_64-linux"],
  supportedFeatures: [],
  mandatoryFeatures: [],
  trust,
});
const policy = (p: Partial<TrustPolicy>): TrustPolicy => ({ ...DEFAULT_TRUST_POLICY, ...p });
const T = { name: "t1", trust: "trusted" as const };
const T2 = { name: "t2", trust: "trusted" as const };
const U = { name: "u1", trust: "untrusted" as const };
const U2 = { name: "u2", trust: "untrusted" as const };

test("globs: * any run, ? one character, nothing else special", () => {
  assert.ok(matchesGlob("stage0-bootstrap-tools-1.0", "*-bootstrap-tools*"));
  assert.ok(matchesGlob("secret-key", "secret-*"));
  assert.ok(matchesGlob("leaf-1", "leaf-?"));
  assert.ok(!matchesGlob("leaf-10", "leaf-?"));
  assert.ok(!matchesGlob("not-secret-key", "secret-*"));
  assert.ok(!matchesGlob("a+b", "a.b"), "a dot is a dot");
  assert.ok(matchesGlob("a+b", "a+b"));
  // nixpkgs' own is named bootstrap-tools: a leading "*-" also matches at the start of the name,
  // as on its store path (HASH-bootstrap-tools).
  assert.ok(matchesGlob("bootstrap-tools", "*-bootstrap-tools*"));
  assert.ok(!matchesGlob("bootstrap-tools", "?-bootstrap-tools*"));
  assert.ok(!matchesGlob("xbootstrap-tools", "*-bootstrap-tools*"));
});

test("trusted-only derivations never go to an untrusted builder, in any round", () => {
  const p = policy({ trustedOnly: ["secret-*"] });
  assert.equal(mayBuildOn(p, "secret-x", U, []), false);
  assert.equal(mayBuildOn(p, "secret-x", T, []), true);
  assert.equal(mayBuildOn(p, "public", U, []), true);
  assert.equal(mayBuildOn(policy({ allTrustedOnly: true }), "public", U, []), false);
  const v = policy({ trustedOnly: ["secret-*"], verifyRounds: 2 });
  assert.equal(mayBuildOn(v, "secret-x", U, [T]), false);
  assert.equal(mayBuildOn(v, "secret-x", T2, [T]), true);
  assert.equal(mayBuildOn(v, "secret-x", T, [T]), false, "never the same builder twice");
});

test("untrustedResults: accept, verify, refuse", () => {
  const accept = policy({});
  assert.ok(isSettled(accept, "x", [U]));
  const verify = policy({ untrustedResults: "verify" });
  assert.ok(mayBuildOn(verify, "x", U, []), "an untrusted builder may build first");
  assert.ok(!isSettled(verify, "x", [U]), "its result stands only once a trusted builder agrees");
  assert.ok(!mayBuildOn(verify, "x", U2, [U]), "the settling build is a trusted one");
  assert.ok(mayBuildOn(verify, "x", T, [U]));
  assert.ok(isSettled(verify, "x", [U, T]));
  assert.ok(isSettled(verify, "x", [T]), "a trusted build needs no check");
  const refuse = policy({ untrustedResults: "refuse" });
  assert.ok(!mayBuildOn(refuse, "x", U, []));
  assert.ok(!isSettled(refuse, "x", [U]));
  const refuseVerify = policy({ untrustedResults: "refuse", verifyRounds: 2 });
  assert.ok(mayBuildOn(refuseVerify, "x", U, [T]), "untrusted builders check trusted builds under --verify");
  assert.ok(isSettled(refuseVerify, "x", [T, U]));
  // Results only travel from trusted holders to stores whose results count.
  assert.ok(!maySendFrom(verify, U, true));
  assert.ok(maySendFrom(verify, U, false));
  assert.ok(maySendFrom(accept, U, true));
  assert.ok(maySendFrom(verify, T, true));
});

test("--verify N and --verify-only GLOB", () => {
  const p = policy({ verifyRounds: 3, verifyOnly: ["hello-*"] });
  assert.equal(verifyRoundsFor(p, "hello-2.12"), 3);
  assert.equal(verifyRoundsFor(p, "other"), 1);
  assert.equal(verifyRoundsFor(policy({ verifyRounds: 2 }), "other"), 2);
  assert.ok(!isSettled(p, "hello-2.12", [T, U]));
  assert.ok(isSettled(p, "hello-2.12", [T, U, T2]));
});

test("scheduler: a trusted-only derivation waits for the busy trusted builder while the untrusted one is free", () => {
  const g = buildGraph(
    [drv("a-hog"), drv("secret-b"), drv("c"), drv("root", ["a-hog", "secret-b", "c"])],
    [P("root.drv")],
  );
  const s = new Scheduler(g, [builder("t1", "trusted"), builder("u1", "untrusted", 2)], {
    placement: trustPlacement(policy({ trustedOnly: ["secret-*", "a-*"] })),
  });
  s.builderUp("t1", 1);
  s.builderUp("u1", 2);
  s.plan(0);
  const first = s.assign().map((a) => [s.node(a.drv).name, a.builder]);
  assert.deepEqual(first.sort(), [
    ["a-hog", "t1"],
    ["c", "u1"],
  ]);
  assert.deepEqual(s.assign(), [], "u1 has a free slot, and secret-b still does not go there");
  assert.deepEqual(s.stuck(), [], "not stuck: a trusted builder is up");
  s.finish(P("a-hog.drv"), { kind: "built" }, 1);
  assert.deepEqual(
    s.assign().map((a) => [s.node(a.drv).name, a.builder]),
    [["secret-b", "t1"]],
  );
  s.builderDown("t1", "gone", 2);
  s.finish(P("secret-b.drv"), { kind: "lost", message: "gone" }, 2);
  assert.deepEqual(s.assign(), []);
  assert.deepEqual(
    s
      .stuck()
      .map((d) => s.node(d).name)
      .sort(),
    ["a-hog", "secret-b"],
    "with every trusted builder down both are stuck (a-hog's output was lost with t1), never sent to u1",
  );
});

test("scheduler: --verify 2 builds on two distinct builders before dependents start", () => {
  const g = buildGraph([drv("leaf"), drv("root", ["leaf"])], [P("root.drv")]);
  const s = new Scheduler(g, [builder("t1", "trusted", 2), builder("u1", "untrusted", 2)], {
    placement: trustPlacement(policy({ verifyRounds: 2, verifyOnly: ["leaf"] })),
  });
  s.builderUp("t1", 2);
  s.builderUp("u1", 2);
  s.plan(0);
  const [a] = s.assign();
  assert.ok(a);
  s.finish(a.drv, { kind: "built" }, 1);
  assert.equal(s.state(a.drv).status, "ready", "one more build first");
  const [b] = s.assign();
  assert.ok(b);
  assert.equal(s.node(b.drv).name, "leaf");
  assert.notEqual(b.builder, a.builder, "on the other builder");
  s.finish(b.drv, { kind: "built" }, 2);
  assert.equal(s.state(a.drv).status, "done");
  assert.deepEqual(s.state(a.drv).builtOn, [a.builder, b.builder]);
  const [c] = s.assign();
  assert.equal(c && s.node(c.drv).name, "root");
  s.finish(P("root.drv"), { kind: "built" }, 3);
  assert.equal(s.state(P("root.drv")).status, "done", "root is not verified (--verify-only leaf)");
});

test("shortfalls: no trusted capable builder, too few builders for --verify", () => {
  const g = buildGraph([drv("secret-x"), drv("y")], [P("secret-x.drv"), P("y.drv")]);
  const nodes = [...g.nodes.values()];
  const pool = [builder("u1", "untrusted"), builder("t1", "trusted")];
  assert.deepEqual(findTrustShortfalls(nodes, pool, policy({ trustedOnly: ["secret-*"] })), []);
  const onlyUntrusted = findTrustShortfalls(
    nodes,
    [builder("u1", "untrusted")],
    policy({ trustedOnly: ["secret-*"] }),
  );
  assert.deepEqual(
    onlyUntrusted.map((s) => [s.name, s.kind]),
    [["secret-x", "trusted"]],
  );
  const e = trustShortfallError(onlyUntrusted, g.nodes, policy({ trustedOnly: ["secret-*"] }));
  assert.equal(e.code, "NO_TRUSTED_BUILDER");
  assert.match(
    e.message,
    /No trusted builder can build secret-x \(\[policy\] trustedOnly "secret-\*"; .*trusted and capable: none\)/,
  );
  const verify = findTrustShortfalls(nodes, pool, policy({ verifyRounds: 3 }));
  assert.deepEqual(
    verify.map((s) => [s.name, s.kind, s.needed]),
    [
      ["secret-x", "distinct", 3],
      ["y", "distinct", 3],
    ],
  );
  assert.equal(
    trustShortfallError(verify, g.nodes, policy({ verifyRounds: 3 })).code,
    "VERIFY_TOO_FEW_BUILDERS",
  );
  const refuse = findTrustShortfalls(
    nodes,
    [builder("u1", "untrusted")],
    policy({ untrustedResults: "refuse" }),
  );
  assert.equal(refuse.length, 2, "refuse: every derivation needs a trusted builder");
});

test("scheduler: a trusted-only derivation's copy on an untrusted builder is no source, even with untrusted results accepted", () => {
  const g = buildGraph([drv("secret-b"), drv("root", ["secret-b"])], [P("root.drv")]);
  const s = new Scheduler(g, [builder("t1", "trusted"), builder("u1", "untrusted")], {
    placement: trustPlacement(policy({ trustedOnly: ["secret-*"] })),
  });
  s.builderUp("t1", 1);
  s.builderUp("u1", 1);
  // Found valid on u1 before the build (planted there, or built there by a build without the policy).
  s.addLocation(P("secret-b.drv"), "u1");
  s.plan(0);
  assert.equal(s.state(P("secret-b.drv")).status, "ready", "built on a trusted builder, not taken from u1");
  assert.deepEqual(
    s.assign().map((a) => [s.node(a.drv).name, a.builder]),
    [["secret-b", "t1"]],
  );
  s.finish(P("secret-b.drv"), { kind: "built" }, 1);
  // Sent to u1 as root's input: that copy feeds nothing else.
  s.addLocation(P("secret-b.drv"), "u1");
  assert.deepEqual([...s.state(P("secret-b.drv")).locations], ["t1"]);
  s.builtElsewhere(P("secret-b.drv"), "u1", 2);
  assert.deepEqual([...s.state(P("secret-b.drv")).locations], ["t1"]);
});
