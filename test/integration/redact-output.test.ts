import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { runCli, withTempDir } from "../helpers/cli.js";

test("stderr is redacted and free of terminal escapes when an API error echoes the token and escape codes", async (t) => {
  const token = "hcloud-secret-token-9d2e77a1";
  // A hostile or broken endpoint that echoes the Authorization header in its error message.
  const server = createServer((req, res) => {
    res.writeHead(403, { "Content-Type": "application/json" });
    res.end(
      JSON.stringify({
        error: {
          code: "forbidden",
          message: `bad token ${req.headers.authorization ?? ""} \u001b]0;owned\u0007\u001b[2J`,
          details: null,
        },
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
    assert.ok(!r.stderr.includes("\u001b"), "no terminal escape from the API reaches stderr");
    const all = await runCli(dir, ["worker", "list", "--all"], {
      env: { HCLOUD_ENDPOINT: endpoint, HCLOUD_TOKEN: token },
      timeout: 60_000,
    });
    assert.equal(all.exitCode, 2, all.stderr);
    assert.match(
      all.stderr,
      /^error: Hetzner Cloud refused .*bad token Bearer \[redacted\] \?\]0;owned\?\?\[2J/m,
    );
    assert.ok(!all.stderr.includes(token) && !all.stderr.includes("\u001b"), all.stderr);
  });
});
