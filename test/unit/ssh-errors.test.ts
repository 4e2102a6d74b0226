import { test } from "node:test";
import assert from "node:assert/strict";
import { classifySshFailure, machinesWithConnectionErrors } from "../../src/core/ssh-errors.js";

test("ssh's stderr is classified into one cause", () => {
  assert.equal(
    classifySshFailure(
      "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.",
    ),
    "host-key-mismatch",
  );
  assert.equal(
    classifySshFailure(
      "No ED25519 host key is known for nixpool-b1 and you have requested strict checking.\nHost key verification failed.",
    ),
    "host-key-unknown",
  );
  assert.equal(classifySshFailure("root@10.0.0.2: Permission denied (publickey)."), "auth-denied");
  assert.equal(
    classifySshFailure("Permissions 0644 for '/k' are too open.\nbad permissions: ignore key: /k"),
    "identity-unreadable",
  );
  assert.equal(classifySshFailure("ssh: connect to host 10.0.0.2 port 22: Connection refused"), "refused");
  assert.equal(classifySshFailure("ssh: connect to host 10.0.0.2 port 22: Connection timed out"), "timeout");
  assert.equal(classifySshFailure("ssh: connect to host 10.0.0.2 port 22: No route to host"), "unreachable");
  assert.equal(classifySshFailure("ssh: Could not resolve hostname nope: Name or service not known"), "dns");
  assert.equal(classifySshFailure("something new"), "unknown");
});

test("machines Nix could not connect to are extracted once each", () => {
  const text =
    "cannot build on 'ssh-ng://nixpool-a': error: cannot open connection to remote store 'ssh-ng://nixpool-a': error: unexpected end-of-file\n" +
    "error: cannot open connection to remote store 'ssh://nixpool-b': x";
  assert.deepEqual(machinesWithConnectionErrors(text), ["ssh-ng://nixpool-a", "ssh://nixpool-b"]);
});
