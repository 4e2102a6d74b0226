import { test } from "node:test";
import assert from "node:assert/strict";
import {
  isLoopbackHost,
  listenUrl,
  parseListenAddress,
  refuseOpenWithoutToken,
} from "../../src/core/listen-address.js";
import { NixpoolError } from "../../src/core/errors.js";

const parse = (t: string) => parseListenAddress(t, "--listen", "nixpool serve --listen 127.0.0.1:7420");

test("HOST:PORT, [IPv6]:PORT and a bare port (on 127.0.0.1)", () => {
  assert.deepEqual(parse("127.0.0.1:7420"), { host: "127.0.0.1", port: 7420 });
  assert.deepEqual(parse("[::1]:0"), { host: "::1", port: 0 });
  assert.deepEqual(parse("localhost:80"), { host: "localhost", port: 80 });
  assert.deepEqual(parse("8080"), { host: "127.0.0.1", port: 8080 });
  assert.equal(listenUrl({ host: "::1", port: 8 }), "http://[::1]:8");
  assert.equal(listenUrl({ host: "0.0.0.0", port: 8 }), "http://0.0.0.0:8");
});

test("anything else is COORDINATOR_LISTEN_INVALID (exit 2), naming the flag", () => {
  for (const bad of ["", ":80", "host:", "host:65536", "a b:1", "http://x:1", "::1:80", "1.2.3.4:-1"]) {
    assert.throws(
      () => parse(bad),
      (e: unknown) =>
        e instanceof NixpoolError &&
        e.code === "COORDINATOR_LISTEN_INVALID" &&
        e.exitCode === 2 &&
        e.message.includes("--listen"),
      bad,
    );
  }
});

test("without a token only loopback is allowed", () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "::1", "localhost"]) assert.ok(isLoopbackHost(h), h);
  for (const h of ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "example.org"]) assert.ok(!isLoopbackHost(h), h);
  refuseOpenWithoutToken({ host: "127.0.0.1", port: 1 }, false);
  refuseOpenWithoutToken({ host: "0.0.0.0", port: 1 }, true);
  assert.throws(
    () => refuseOpenWithoutToken({ host: "0.0.0.0", port: 7420 }, false),
    (e: unknown) => e instanceof NixpoolError && e.code === "COORDINATOR_OPEN_TO_NETWORK" && e.exitCode === 2,
  );
});
