import { test } from "node:test";
import assert from "node:assert/strict";
import { NixpoolError } from "../../src/core/errors.js";
import type { CoordinatorApi } from "../../src/serve/coordinator-types.js";
import { createApiApp } from "../../src/serve/http/app.js";
import { FixtureSource } from "../helpers/dashboard-fixtures.js";

/** The fixture as a coordinator that refuses every submission, as Coordinator.submit does for an unknown builder. */
class RefusingCoordinator extends FixtureSource implements CoordinatorApi {
  submit(): string {
    throw new NixpoolError("BUILDER_UNKNOWN", "No builder nope in this pool.", { hint: "nixpool builders" });
  }
  cancel(): Promise<void> {
    return Promise.resolve();
  }
  gatewayUids(): ReadonlySet<number> {
    return new Set([0]);
  }
  waitFor(): never {
    throw new Error("not used");
  }
  drain(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const body = JSON.stringify({
  derivations: [{ drv: `/nix/store/${"a".repeat(32)}-hello.drv`, output: "out" }],
  label: "hello",
  builders: ["nope"],
});

test("a submission the coordinator refuses is a JSON error, also when the client asked for an event stream", async () => {
  const logged: string[] = [];
  const { app } = createApiApp({
    coordinator: new RefusingCoordinator(),
    auth: { token: undefined, cookieName: "nixpool-0" },
    log: (line) => logged.push(line),
  });
  for (const accept of ["application/json", "text/event-stream"]) {
    const res = await app.request(
      "/api/builds",
      { method: "POST", body, headers: { "content-type": "application/json", accept } },
      { transport: "tcp" },
    );
    assert.equal(res.status, 404, accept);
    assert.match(res.headers.get("content-type") ?? "", /^application\/json/, accept);
    assert.deepEqual(await res.json(), {
      code: "BUILDER_UNKNOWN",
      message: "No builder nope in this pool.",
      hint: "nixpool builders",
    });
  }
  assert.deepEqual(logged, []);
});

/** A coordinator whose build starts and finishes while submit() still runs: nothing of it may be lost. */
class InstantCoordinator extends RefusingCoordinator {
  override submit(): string {
    const b1 = this.details.get("b1");
    assert.ok(b1);
    const { derivations: _d, outputs: _o, error: _e, ...summary } = b1;
    this.emit({ type: "log", buildId: "b1", drv: "/nix/store/aaaa-step-1.drv", line: "early line" });
    this.details.set("b1", { ...b1, status: "succeeded" });
    this.emit({ type: "build", build: { ...summary, status: "succeeded" } });
    return "b1";
  }
}

test("a streamed submission sends its id, every event the build made meanwhile, and its end", async () => {
  const { app } = createApiApp({
    coordinator: new InstantCoordinator(),
    auth: { token: undefined, cookieName: "nixpool-0" },
    log: () => {},
  });
  const res = await app.request(
    "/api/builds",
    { method: "POST", body, headers: { "content-type": "application/json", accept: "text/event-stream" } },
    { transport: "tcp" },
  );
  assert.equal(res.status, 200);
  const types = [...(await res.text()).matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
  assert.deepEqual(types, ["submitted", "log", "build", "end"]);
});

test("/?token= sets the cookie and redirects within this coordinator, never to another host", async () => {
  const { app } = createApiApp({
    coordinator: new RefusingCoordinator(),
    auth: { token: "secret-token", cookieName: "nixpool-1" },
    log: () => {},
  });
  const res = await app.request("//evil.example/builds?token=secret-token", {}, { transport: "tcp" });
  assert.equal(res.status, 302);
  assert.equal(res.headers.get("location"), "/evil.example/builds");
  assert.match(res.headers.get("set-cookie") ?? "", /HttpOnly/);
  assert.doesNotMatch(res.headers.get("set-cookie") ?? "", /secret-token/);
});

test("without a token (--no-token), a TCP request may read but never import into the store; with one it may", async () => {
  const opened: string[] = [];
  const store = {
    // Every store call is recorded: a refused import must not even open the store.
    openStore: () => {
      opened.push("open");
      return Promise.reject(new Error("the test's store is not reachable"));
    },
  };
  const importRequest = (token?: string) => ({
    method: "POST",
    body: "not an export stream",
    headers: {
      "content-type": "application/x-nix-export",
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
  });
  const open = createApiApp({
    coordinator: new RefusingCoordinator(),
    auth: { token: undefined, cookieName: "nixpool-2" },
    store,
    log: () => {},
  }).app;
  const who = await open.request("/api/whoami", {}, { transport: "tcp" });
  assert.equal(who.status, 200);
  const refused = await open.request("/api/store/import", importRequest(), { transport: "tcp" });
  assert.equal(refused.status, 403);
  const body = (await refused.json()) as { code: string; message: string; hint: string };
  assert.equal(body.code, "API_FORBIDDEN");
  assert.match(body.message, /without a token \(--no-token\)/);
  assert.match(body.hint, /nixpool serve token --client NAME/);
  assert.deepEqual(opened, []);

  const guarded = createApiApp({
    coordinator: new RefusingCoordinator(),
    auth: { token: "secret-token", cookieName: "nixpool-3" },
    store,
    log: () => {},
  }).app;
  const admitted = await guarded.request("/api/store/import", importRequest("secret-token"), {
    transport: "tcp",
  });
  assert.notEqual(admitted.status, 403);
  assert.deepEqual(opened, ["open"]);
});
