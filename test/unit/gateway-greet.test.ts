import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { encodeServerHello } from "../../src/core/nix-serve/handshake.js";

const GREET = resolve(import.meta.dirname, "../../src/serve/gateway/greet.sh");

test("greet.sh writes the serve protocol's server greeting, byte for byte, then runs its arguments with --greeted", async () => {
  // /bin/echo stands for node: it prints the arguments greet.sh passes on.
  const { stdout } = await promisify(execFile)(GREET, ["/bin/echo", "main.js", "--client", "ci"], {
    encoding: "buffer",
  });
  const hello = Buffer.from(encodeServerHello());
  assert.equal(hello.length, 16);
  assert.deepEqual(stdout.subarray(0, 16), hello);
  assert.equal(stdout.subarray(16).toString(), "main.js --client ci --greeted\n");
});
