import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { runCli, withTempDir } from "../helpers/cli.js";

test("warnings on stderr are redacted: an API error that echoes the token does not print it", async (t) => {
  const token = "hcloud-secret-token-9d2e77a1";
  // A hostile or broken endpoint that echoes the Authorization header in its error message.
  const server = createServer((req, res) => {
    res.writeHead(403, { "Content-Type": "application/json" });
    res.end(
      JSON.stringify({
        error: { code: "forbidden", message: `bad token ${req.headers.authorization ?? ""}`, details: null },
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  await withTempDir(async (dir) => {
    const r = await runCli(dir, ["worker", "list"], {
      env: { HCLOUD_ENDPOINT: endpoint, HCLOUD_TOKEN: token },
      timeout: 60_000,
    });
    assert.match(r.stderr, /warning: gc of leftover workers failed: .*bad token Bearer \[redacted\]/);
    assert.ok(!r.stderr.includes(token) && !r.stdout.includes(token), r.stderr);
  });
});
