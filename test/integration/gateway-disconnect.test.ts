import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { encodeClientHello } from "../../src/core/nix-serve/index.js";
import { gatewayLogPath } from "../../src/serve/gateway/gateway-log.js";

const GATEWAY = resolve(import.meta.dirname, "../../dist/serve/gateway/main.js");

test("a client that hangs up (its ends of stdout and stderr closed) still gets its session in the gateway log, no EPIPE crash", async () => {
  const stateDir = await mkdtemp(join(tmpdir(), "nixpool-gw-hangup-"));
  try {
    const child = spawn("/usr/bin/node", [GATEWAY, "--state-dir", stateDir, "--client", "alice"], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    // The server's greeting arrives: the gateway is up. Then the client goes away: sshd closes
    // the pipes to the gateway; the client's last bytes were a command the gateway refuses, so
    // it writes its reason to a stderr nobody reads any more.
    await new Promise<void>((r) => child.stdout.once("data", () => r()));
    child.stdout.destroy();
    child.stderr.destroy();
    child.stdin.end(Buffer.concat([encodeClientHello(0x207), Buffer.alloc(8, 0xff)]));
    const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    assert.equal(code, 1);
    const lines = (await readFile(gatewayLogPath(stateDir), "utf8").catch(() => "")).trim().split("\n");
    const entry = JSON.parse(lines.at(-1) || "{}") as { client?: string; error?: { code: string } };
    assert.equal(entry.client, "alice", "the session's line in the gateway log");
    assert.equal(entry.error?.code, "SERVE_PROTOCOL_ERROR");
  } finally {
    await rm(stateDir, { recursive: true, force: true });
  }
});
