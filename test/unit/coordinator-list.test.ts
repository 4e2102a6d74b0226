import { test } from "node:test";
import assert from "node:assert/strict";
import {
  describeAddress,
  failoverOrder,
  isLoopbackHost,
  MAX_COORDINATORS,
  parseCoordinatorList,
  plainHttpTokenWarning,
  submitOrder,
} from "../../src/core/coordinator-list.js";
import { findCoordinators } from "../../src/serve/client/coordinator-target.js";
import { NixpoolError } from "../../src/core/errors.js";
import {
  followBackoffMs,
  followsElsewhere,
  isOrphaned,
  triesNextCoordinator,
} from "../../src/serve/client/coordinator-failover.js";

const names = (text: string, from = "--coordinator") => parseCoordinatorList(text, from).map(describeAddress);

/** Asserts COORDINATOR_URL_INVALID (exit 2) whose message contains each of `parts`. */
function refused(text: string, ...parts: string[]) {
  assert.throws(
    () => parseCoordinatorList(text, "NIXPOOL_COORDINATOR"),
    (e: unknown) => {
      assert.ok(e instanceof NixpoolError, String(e));
      assert.equal(e.code, "COORDINATOR_URL_INVALID");
      assert.equal(e.exitCode, 2);
      for (const p of parts) assert.ok(e.message.includes(p), `${e.message} names ${p}`);
      assert.match(e.hint ?? "", /unix:\/path\/to\/api\.sock|http:\/\//);
      return true;
    },
    text,
  );
}

test("one entry reads as before: a URL, unix:PATH, or an absolute socket path", () => {
  assert.deepEqual(names("http://127.0.0.1:7420"), ["http://127.0.0.1:7420"]);
  assert.deepEqual(names("https://build.example/api/"), ["https://build.example/api"]);
  assert.deepEqual(names("unix:/run/nixpool/api.sock"), ["unix:/run/nixpool/api.sock"]);
  assert.deepEqual(names("/run/nixpool/api.sock"), ["unix:/run/nixpool/api.sock"]);
  const [one] = parseCoordinatorList("http://[::1]:8", "--coordinator");
  assert.equal(one?.kind, "http");
  // The single entry's error names the flag as before, without an entry number.
  assert.throws(
    () => parseCoordinatorList("ftp://x", "--coordinator"),
    (e: unknown) => e instanceof NixpoolError && /^--coordinator "ftp:\/\/x" is neither/.test(e.message),
  );
});

test("a comma-separated list keeps its order, entries trimmed, sockets and URLs mixed", () => {
  assert.deepEqual(names("http://10.0.0.1:7420, http://10.0.0.2:7420 ,unix:/x.sock"), [
    "http://10.0.0.1:7420",
    "http://10.0.0.2:7420",
    "unix:/x.sock",
  ]);
});

test("each entry is validated; the error names which one", () => {
  refused("http://a:1,ftp://b", 'NIXPOOL_COORDINATOR entry 2 "ftp://b"', "neither http(s):// nor unix:");
  refused("not a url,http://a:1", 'entry 1 "not a url"', "is not a URL");
  refused("http://a:1,unix:relative.sock", "entry 2", "names no absolute socket path");
  refused("http://a:1,http://user:pw@b:2", "entry 2", "credentials");
  refused("http://a:1,http://b:2?token=x", "entry 2", "credentials, a query or a fragment");
  refused("http://a:1,,http://b:2", "entry 2", "is empty");
  refused("http://a:1,", "entry 2", "is empty");
  refused("http://a:1,http://a:1/", "entry 2", "same coordinator as entry 1");
  refused("/x.sock,unix:/x.sock", "entry 2", "same coordinator as entry 1");
  const many = Array.from({ length: MAX_COORDINATORS + 1 }, (_, i) => `http://h${i}:1`).join(",");
  refused(many, `names ${MAX_COORDINATORS + 1} coordinators`);
});

test("after losing one, the next is asked first, then round the list, the lost one last", () => {
  assert.deepEqual(failoverOrder(3, 0), [1, 2, 0]);
  assert.deepEqual(failoverOrder(3, 2), [0, 1, 2]);
  assert.deepEqual(failoverOrder(2, 0), [1, 0]);
  assert.deepEqual(failoverOrder(1, 0), [0]);
  assert.deepEqual(submitOrder(3, 0), [0, 1, 2]);
  assert.deepEqual(submitOrder(3, 1), [1, 2, 0]);
});

test("no pause within a round of the list, then a backoff from 0.25 s doubling to 5 s", () => {
  assert.deepEqual(
    Array.from({ length: 14 }, (_, i) => followBackoffMs(i + 1, 2)),
    [0, 250, 0, 500, 0, 1000, 0, 2000, 0, 4000, 0, 5000, 0, 5000],
  );
  assert.deepEqual(
    Array.from({ length: 3 }, (_, i) => followBackoffMs(i + 1, 1)),
    [250, 500, 1000],
  );
});

test("which answers send a client to the next coordinator", () => {
  const err = (code: ConstructorParameters<typeof NixpoolError>[0], status?: number) =>
    new NixpoolError(code, "x", status === undefined ? {} : { details: { status } });
  // Submitting: unreachable or 503 tries the next; any other refusal is final.
  assert.ok(triesNextCoordinator(err("COORDINATOR_UNREACHABLE")));
  assert.ok(triesNextCoordinator(err("COORDINATOR_DRAINING", 503)));
  assert.ok(triesNextCoordinator(err("DATABASE_UNREACHABLE", 503)));
  assert.ok(!triesNextCoordinator(err("COORDINATOR_UNAUTHORIZED", 401)));
  assert.ok(!triesNextCoordinator(err("API_BAD_REQUEST", 400)));
  assert.ok(!triesNextCoordinator(err("API_NOT_FOUND", 404)));
  assert.ok(!triesNextCoordinator(err("COORDINATOR_BAD_RESPONSE")));
  assert.ok(!triesNextCoordinator(new Error("ECONNREFUSED")));
  // Following a named build: a coordinator that does not know it (yet) is asked again later.
  assert.ok(followsElsewhere(err("COORDINATOR_UNREACHABLE")));
  assert.ok(followsElsewhere(err("DATABASE_UNREACHABLE", 503)));
  assert.ok(followsElsewhere(err("API_NOT_FOUND", 404)));
  assert.ok(!followsElsewhere(err("COORDINATOR_UNAUTHORIZED", 401)));
  assert.ok(!followsElsewhere(err("COORDINATOR_BAD_RESPONSE")));
});

test("a build is submitted again only when it failed as BUILD_ORPHANED", () => {
  const d = (status: "failed" | "succeeded" | "cancelled", code?: string) => ({
    id: "b1",
    label: "x",
    status,
    outputs: [],
    ...(code ? { error: { code, message: "m" } } : {}),
  });
  assert.ok(isOrphaned(d("failed", "BUILD_ORPHANED")));
  assert.ok(!isOrphaned(d("failed", "BUILD_FAILED")));
  assert.ok(!isOrphaned(d("failed")));
  assert.ok(!isOrphaned(d("cancelled", "BUILD_ORPHANED")));
  assert.ok(!isOrphaned(d("succeeded")));
});

test("a token sent over plain http to another machine gets one warning on stderr, never the token", async () => {
  const token = "s3cret-token-value";
  const warned = async (flag: string, env: NodeJS.ProcessEnv = { NIXPOOL_COORDINATOR_TOKEN: token }) => {
    const lines: string[] = [];
    await findCoordinators(flag, "/nonexistent-state-dir", env, (l) => lines.push(l));
    return lines;
  };
  const [line, ...more] = await warned("http://10.1.2.3:7420");
  assert.deepEqual(more, []);
  assert.match(
    line ?? "",
    /^nixpool: warning: the coordinator's token goes to http:\/\/10\.1\.2\.3:7420 over plain http/,
  );
  assert.match(line ?? "", /TLS/);
  assert.ok(!(line ?? "").includes(token));
  assert.equal((await warned("http://coordinator.example:7420,http://127.0.0.1:7420")).length, 1);
  // Loopback, https, a socket, or no token to send: nothing to warn about.
  for (const quiet of [
    "http://127.0.0.1:7420",
    "http://localhost:7420",
    "http://[::1]:7420",
    "https://10.1.2.3:7420",
    "unix:/run/nixpool/api.sock",
  ])
    assert.deepEqual(await warned(quiet), [], quiet);
  assert.deepEqual(await warned("http://10.1.2.3:7420", {}), []);
  assert.equal(isLoopbackHost("127.8.9.10"), true);
  assert.equal(isLoopbackHost("128.0.0.1"), false);
  assert.equal(plainHttpTokenWarning({ kind: "http", url: new URL("http://10.0.0.1/") }, false), undefined);
});
