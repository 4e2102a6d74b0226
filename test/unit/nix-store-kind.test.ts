import { test } from "node:test";
import assert from "node:assert/strict";
import {
  effectiveStoreUri,
  isDaemonBuilding,
  resolveStoreKind,
  storeProbePaths,
  type StoreFacts,
} from "../../src/core/nix-store-kind.js";

const facts = (over: Partial<StoreFacts> = {}): StoreFacts => ({
  stateWritable: false,
  daemonSocket: true,
  ...over,
});

test("the store setting wins over NIX_REMOTE, which wins over auto (Nix 2.8 globals.hh)", () => {
  assert.equal(effectiveStoreUri({}), "auto");
  assert.equal(effectiveStoreUri({ nixRemote: "daemon" }), "daemon");
  assert.equal(effectiveStoreUri({ storeSetting: "local", nixRemote: "daemon" }), "local");
  assert.equal(effectiveStoreUri({ storeSetting: "", nixRemote: "" }), "auto");
});

test("auto: local when the state directory is writable, else the daemon when its socket exists, else local", () => {
  assert.equal(resolveStoreKind("auto", { stateWritable: true, daemonSocket: true }), "local");
  assert.equal(resolveStoreKind("auto", { stateWritable: false, daemonSocket: true }), "daemon");
  assert.equal(resolveStoreKind("auto", { stateWritable: false, daemonSocket: false }), "local");
  assert.equal(resolveStoreKind("", { stateWritable: false, daemonSocket: true }), "daemon");
  assert.equal(resolveStoreKind("auto?state=/x", { stateWritable: false, daemonSocket: true }), "daemon");
});

test("named stores are what they say whatever was probed; other schemes are neither", () => {
  for (const probe of [
    { stateWritable: true, daemonSocket: false },
    { stateWritable: false, daemonSocket: true },
  ]) {
    assert.equal(resolveStoreKind("daemon", probe), "daemon");
    assert.equal(resolveStoreKind("daemon?trusted=1", probe), "daemon");
    assert.equal(resolveStoreKind("unix:///run/nix.sock", probe), "daemon");
    assert.equal(resolveStoreKind("local", probe), "local");
    assert.equal(resolveStoreKind("local?root=/r", probe), "local");
    assert.equal(resolveStoreKind("/srv/nix-root", probe), "local");
    assert.equal(resolveStoreKind("ssh-ng://b1", probe), "other");
    assert.equal(resolveStoreKind("file:///cache", probe), "other");
  }
});

test("one answer to 'is a daemon building?' for build and doctor: root is not special, the probe is", () => {
  // Root that cannot write the state directory (read-only /nix) still talks to the daemon.
  assert.equal(isDaemonBuilding(facts()), true);
  assert.equal(isDaemonBuilding(facts({ stateWritable: true })), false);
  assert.equal(isDaemonBuilding(facts({ nixRemote: "local" })), false);
  assert.equal(isDaemonBuilding(facts({ stateWritable: true, nixRemote: "daemon" })), true);
  // nix.conf's store = daemon overrides a NIX_REMOTE=local of the environment.
  assert.equal(
    isDaemonBuilding(facts({ stateWritable: true, storeSetting: "daemon", nixRemote: "local" })),
    true,
  );
  assert.equal(isDaemonBuilding(facts({ nixRemote: "unix:///nix/var/nix/daemon-socket/socket" })), true);
});

test("the paths probed follow NIX_STATE_DIR, NIX_DAEMON_SOCKET_PATH and ?state=", () => {
  assert.deepEqual(storeProbePaths("auto", {}), {
    stateDir: "/nix/var/nix",
    daemonSocket: "/nix/var/nix/daemon-socket/socket",
  });
  assert.deepEqual(storeProbePaths("auto", { NIX_STATE_DIR: "/s" }), {
    stateDir: "/s",
    daemonSocket: "/s/daemon-socket/socket",
  });
  assert.deepEqual(storeProbePaths("auto?state=/t", { NIX_DAEMON_SOCKET_PATH: "/run/sock" }), {
    stateDir: "/t",
    daemonSocket: "/run/sock",
  });
});
