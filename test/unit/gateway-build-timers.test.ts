import { mock, test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_BUILD_OPTIONS } from "../../src/core/nix-serve/index.js";
import { CoordinatorBuilds } from "../../src/serve/gateway/gateway-build.js";
import type { CoordinatorClient } from "../../src/serve/client/coordinator-client.js";
import type { StreamEvent } from "../../src/serve/client/coordinator-responses.js";

const P = (c: string, name: string) => `/nix/store/${c.repeat(32)}-${name}`;
const drvPath = P("a", "hello.drv");
const drv = {
  outputs: new Map([["out", { path: P("b", "hello"), hashAlgo: "", hash: "" }]]),
  inputSrcs: [],
  platform: "x86_64-linux",
  builder: "/bin/sh",
  args: ["-c", "echo hi > $out"],
  env: new Map([["out", P("b", "hello")]]),
};

/** A coordinator whose build waits in the queue, then starts, logs and succeeds when told. */
function queuedCoordinator() {
  let emit!: (e: StreamEvent) => void;
  let finish!: () => void;
  const cancelled: string[] = [];
  const coordinator = {
    submit: (_req: unknown, onEvent: (e: StreamEvent) => void) =>
      new Promise((resolve) => {
        emit = onEvent;
        onEvent({ type: "submitted", id: "b1" });
        finish = () =>
          resolve({
            id: "b1",
            label: "x",
            status: cancelled.length ? "cancelled" : "succeeded",
            outputs: [],
          });
      }),
    cancel: (id: string) => {
      cancelled.push(id);
      finish();
      return Promise.resolve();
    },
  } as unknown as CoordinatorClient;
  const start = () =>
    emit({
      type: "dispatch",
      buildId: "b1",
      event: { kind: "start", drv: drvPath, name: "hello", builder: "b", attempt: 1 },
    });
  return { coordinator, start, finish: () => finish(), cancelled };
}

test("maxSilentTime and buildTimeout count from the build's start on a builder, not from its wait in the queue", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const c = queuedCoordinator();
    const builds = new CoordinatorBuilds(c.coordinator, "alice", () => 0);
    const options = { ...DEFAULT_BUILD_OPTIONS, maxSilentTime: 10, buildTimeout: 20 };
    const result = builds.build(drvPath, drv, options, () => undefined);
    await Promise.resolve();
    // Half an hour waiting for a slot (other clients' builds hold them): no timeout yet.
    mock.timers.tick(30 * 60_000);
    assert.deepEqual(c.cancelled, []);
    c.start();
    mock.timers.tick(5_000);
    c.finish();
    const r = await result;
    assert.equal(r.statusName, "Built");
  } finally {
    mock.timers.reset();
  }
});

test("a build silent for maxSilentTime after it started is cancelled and reported as TimedOut", async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const c = queuedCoordinator();
    const builds = new CoordinatorBuilds(c.coordinator, "alice", () => 0);
    const options = { ...DEFAULT_BUILD_OPTIONS, maxSilentTime: 10 };
    const result = builds.build(drvPath, drv, options, () => undefined);
    await Promise.resolve();
    c.start();
    mock.timers.tick(10_000);
    const r = await result;
    assert.deepEqual(c.cancelled, ["b1"]);
    assert.equal(r.statusName, "TimedOut");
    assert.match(r.errorMsg, /10 seconds of silence/);
  } finally {
    mock.timers.reset();
  }
});
