import { test } from "node:test";
import assert from "node:assert/strict";
import { Hono } from "hono";
import type { ApiEnv } from "../../src/serve/http/api-env.js";
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
    mountPoolRoutes(app, pool);
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
