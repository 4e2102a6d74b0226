import { test } from "node:test";
import assert from "node:assert/strict";
import { connectionLostError, describeClose, requestTimeoutError } from "../../src/core/nix-serve/index.js";

const exited = (exitCode: number | undefined, signal?: string) => ({
  exitCode,
  signal,
  failedToStart: undefined,
});

test("the end of a session is explained by what nixpool did first, else by how the process ended", () => {
  assert.deepEqual(
    describeClose("nix-store", undefined, exited(1), ["error: path '/nix/store/x' is not valid"]),
    {
      kind: "eof",
      message: "its process exited with 1",
      exitCode: 1,
      signal: undefined,
      stderrTail: ["error: path '/nix/store/x' is not valid"],
      sshFailure: undefined,
    },
  );
  assert.equal(
    describeClose("nix-store", undefined, exited(undefined, "SIGKILL"), []).message,
    "its process was killed by SIGKILL",
  );
  assert.equal(describeClose("nix-store", undefined, exited(undefined), []).message, "it closed its output");
  const intent = { kind: "timeout" as const, message: "it did not answer QueryValidPaths within 300 ms" };
  const r = describeClose("nix-store", intent, exited(undefined, "SIGKILL"), []);
  assert.equal(r.kind, "timeout");
  assert.equal(r.message, intent.message);
  const notStarted = describeClose(
    "/x/nix-store",
    undefined,
    { exitCode: undefined, signal: undefined, failedToStart: "ENOENT" },
    [],
  );
  assert.equal(notStarted.kind, "not-started");
  assert.match(notStarted.message, /\/x\/nix-store could not be started \(ENOENT\)/);
});

test("ssh's own complaints are classified only when the command is ssh", () => {
  const tail = [
    "No ED25519 host key is known for nixpool-local1 and you have requested strict checking.",
    "Host key verification failed.",
  ];
  assert.equal(describeClose("/usr/bin/ssh", undefined, exited(255), tail).sshFailure, "host-key-unknown");
  assert.equal(describeClose("ssh", undefined, exited(255), ["Connection refused"]).sshFailure, "refused");
  assert.equal(describeClose("ssh", undefined, exited(255), ["something else"]).sshFailure, undefined);
  assert.equal(describeClose("nix-store", undefined, exited(1), tail).sshFailure, undefined);
});

test("a lost connection names the peer, the request, why, and the stderr tail; an abort is INTERRUPTED", () => {
  const reason = describeClose("ssh", undefined, exited(255), ["", "Connection refused", "  "]);
  const e = connectionLostError(
    "builder b1",
    "BuildDerivation of /nix/store/x.drv",
    reason,
    undefined,
    "ssh nixpool-b1 nix-store --serve --write",
  );
  assert.equal(e.code, "SERVE_CONNECTION_LOST");
  assert.equal(
    e.message,
    "The connection to builder b1 was lost during BuildDerivation of /nix/store/x.drv: its process exited with 255 (Connection refused).",
  );
  assert.equal(e.details?.["sshFailure"], "refused");
  assert.equal(e.details?.["exitCode"], 255);
  assert.match(e.hint ?? "", /nixpool doctor/);
  const closing = connectionLostError(
    "the local store",
    "ImportPaths",
    undefined,
    { kind: "killed", message: "nixpool killed the connection" },
    "nix-store",
  );
  assert.match(closing.message, /lost during ImportPaths: nixpool killed the connection\.$/);
  const aborted = connectionLostError(
    "the local store",
    "QueryValidPaths",
    undefined,
    { kind: "aborted", message: "x" },
    "nix-store",
  );
  assert.equal(aborted.code, "INTERRUPTED");
  assert.equal(aborted.exitCode, 130);
  const t = requestTimeoutError("builder b1", "QueryValidPaths", 300);
  assert.equal(t.code, "SERVE_TIMEOUT");
  assert.equal(t.message, "Builder b1 did not answer QueryValidPaths within 300 ms.");
});
