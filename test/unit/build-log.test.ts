import { test } from "node:test";
import assert from "node:assert/strict";
import {
  applyBuildLogLine,
  createBuildLogState,
  derivationName,
  failedDerivation,
} from "../../src/core/build-log.js";

const drv = "/nix/store/56a6a7q5w8gj5zmwrmw8g78xsjf18y03-leaf-0.drv";
const ev = (o: unknown) => `@nix ${JSON.stringify(o)}`;

test("a hook build is attributed to its machine, timed from start to stop, with its log tail", () => {
  const s = createBuildLogState();
  assert.equal(applyBuildLogLine(s, "plain text from ssh", 0), undefined);
  const started = applyBuildLogLine(
    s,
    ev({ action: "start", id: 7, type: 105, fields: [drv, "ssh-ng://nixpool-local1", 1, 1] }),
    1000,
  );
  assert.equal(started?.kind, "start");
  // The remote daemon's own start (empty machine) must not overwrite the machine, nor start it again.
  const again = applyBuildLogLine(
    s,
    ev({ action: "start", id: 9, type: 105, fields: [drv, "", 1, 1] }),
    1200,
  );
  assert.equal(again, undefined);
  applyBuildLogLine(
    s,
    ev({ action: "result", id: 9, type: 101, fields: ["hello \u001b[1mworld\u001b[0m"] }),
    1300,
  );
  assert.equal(applyBuildLogLine(s, ev({ action: "stop", id: 9 }), 1400)?.kind, "done");
  assert.equal(applyBuildLogLine(s, ev({ action: "stop", id: 7 }), 1500), undefined, "finished once");
  const b = s.builds.get(drv);
  assert.ok(b);
  assert.equal(b.machine, "ssh-ng://nixpool-local1");
  assert.equal(b.startedMs, 1000);
  assert.equal(b.finishedMs, 1400);
  assert.deepEqual(b.logTail, ["hello world"]);
});

test("waits and errors are collected; the failed derivation is found in Nix's message", () => {
  const s = createBuildLogState();
  applyBuildLogLine(s, ev({ action: "start", id: 1, type: 111, text: "waiting for a machine" }), 0);
  applyBuildLogLine(
    s,
    ev({ action: "msg", level: 0, msg: `error: builder for '${drv}' failed with exit code 3;` }),
    0,
  );
  applyBuildLogLine(s, ev({ action: "msg", level: 3, msg: "not an error" }), 0);
  applyBuildLogLine(s, "@nix {not json", 0);
  assert.equal(s.waits, 1);
  assert.equal(s.errors.length, 1);
  assert.equal(failedDerivation(s.errors), drv);
  assert.equal(failedDerivation(["error: something else"]), undefined);
});

test("derivationName strips the store hash and .drv", () => {
  assert.equal(derivationName(drv), "leaf-0");
  assert.equal(derivationName("/nix/store/vcwv436q0qnhahdvvg1xp56nk22ls1yw-graph-root.drv"), "graph-root");
});

test("Nix's warnings, printed at level 0 like errors, are never collected as errors", () => {
  const s = createBuildLogState();
  applyBuildLogLine(
    s,
    ev({
      action: "msg",
      level: 0,
      msg: "warning: the group 'nixbld' specified in 'build-users-group' does not exist",
    }),
    0,
  );
  applyBuildLogLine(s, ev({ action: "msg", level: 0, msg: "\u001b[31;1merror:\u001b[0m boom" }), 0);
  assert.deepEqual(s.errors, ["error: boom"]);
});
