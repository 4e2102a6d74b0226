import { test } from "node:test";
import assert from "node:assert/strict";
import { Hono } from "hono";
import type { ApiEnv } from "../../src/serve/http/api-env.js";
import { answerError } from "../../src/serve/http/api-error.js";
import { mountPoolRoutes } from "../../src/serve/http/pool-routes.js";
import { SMALL_NAR, type PoolStore } from "../../src/serve/pool-store.js";

test("a NAR the size a builder's shared transfer session sends never waits for a client that does not read", async () => {
  // The dispatcher's transfer session to a builder serves every build's inputs and outputs: while
  // it streams a gateway client's NAR into the response, a client that stops reading must not
  // hold it (backpressure would pause the session until the gateway gives up on the client).
  let pushedBack = -1;
  let written = 0;
  const dumped = new Promise<void>((resolve) => {
    const pool = {
      nar: () =>
        Promise.resolve((sink: NodeJS.WritableStream) => {
          const chunk = Buffer.alloc(64 * 1024, 1);
          while (written < SMALL_NAR) {
            if (!sink.write(chunk) && pushedBack < 0) pushedBack = written;
            written += chunk.length;
          }
          resolve();
          return Promise.resolve();
        }),
    } as unknown as PoolStore;
    const app = new Hono<ApiEnv>();
    app.use(async (c, next) => {
      c.set("client", { user: "nixpool", uid: 990, via: "socket" });
      await next();
    });
    mountPoolRoutes(app, pool, () => new Set([0, 990]));
    const request = app.request.bind(app) as (path: string, init: RequestInit) => Promise<Response>;
    void request("/api/pool/nar", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ path: `/nix/store/${"a".repeat(32)}-big` }),
    }).then((res) => assert.equal(res.status, 200)); // its body is never read
  });
  await dumped;
  assert.equal(written, SMALL_NAR);
  assert.equal(pushedBack, -1, `the session was pushed back after ${pushedBack} bytes`);
});

test("writing routes (fetch, valid with substitute) answer only root and the gateway's account; reading ones every local account", async () => {
  const calls: string[] = [];
  const pool = {
    valid: (paths: string[], substitute: boolean) => {
      calls.push(`valid:${substitute}`);
      return Promise.resolve(paths);
    },
    fetchToLocal: () => {
      calls.push("fetch");
      return Promise.resolve(1);
    },
  } as unknown as PoolStore;
  const appAs = (uid: number, user: string) => {
    const app = new Hono<ApiEnv>();
    app.onError((e, c) => answerError(c, e, () => undefined));
    app.use(async (c, next) => {
      c.set("client", { user, uid, via: "socket" });
      await next();
    });
    mountPoolRoutes(app, pool, () => new Set([0, 990]));
    return (path: string, body: unknown) =>
      app.request(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
  };
  const paths = [`/nix/store/${"a".repeat(32)}-x`];
  const nobody = appAs(65534, "nobody");
  for (const [route, body] of [
    ["/api/pool/fetch", { paths }],
    ["/api/pool/valid", { paths, substitute: true }],
  ] as const) {
    const res = await nobody(route, body);
    assert.equal(res.status, 403, route);
    const err = (await res.json()) as { code: string; message: string; hint: string };
    assert.equal(err.code, "API_FORBIDDEN");
    assert.match(err.message, /nobody may not .* into the coordinator machine's store/);
    assert.match(err.hint, /--gateway-user/);
  }
  assert.deepEqual(calls, [], "nothing was written for nobody");
  assert.equal((await nobody("/api/pool/valid", { paths })).status, 200);
  for (const [uid, user] of [
    [990, "nixpool"],
    [0, "root"],
  ] as const) {
    const as = appAs(uid, user);
    assert.equal((await as("/api/pool/fetch", { paths })).status, 200, user);
    assert.equal((await as("/api/pool/valid", { paths, substitute: true })).status, 200, user);
  }
  assert.deepEqual(calls, ["valid:false", "fetch", "valid:true", "fetch", "valid:true"]);
});
