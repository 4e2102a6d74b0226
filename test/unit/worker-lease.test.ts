import { test } from "node:test";
import assert from "node:assert/strict";
import { LABELS, leaseLabels, newLease, planReap, type Lease } from "../../src/core/lease.js";
import { renderCloudInit, renderWorkerNixConf, WORKER_SYSTEM_PROFILE } from "../../src/core/cloud-init.js";
import { parseUserData } from "../../src/emulator/hetzner/user-data.js";
import { parseOn, parseWorkerRequest } from "../../src/providers/hetzner/rent.js";
import { renderShellRc } from "../../src/commands/worker.js";

const NOW = Date.parse("2026-11-27T10:00:00Z");
const lease = (id: string, o: Partial<Lease> = {}): Lease => ({
  ...newLease({ id, owner: "aaaaaaaaaaaa", nowMs: NOW - 60_000, ttlMs: 3_600_000, holder: { kind: "user" } }),
  ...o,
});
const LABEL_VALUE = /^([a-z0-9A-Z]([a-z0-9A-Z._-]{0,61}[a-z0-9A-Z])?)?$/;

test("a lease derives the server name and labels; label values are valid for Hetzner", () => {
  const l = newLease({
    id: "0123456789",
    owner: "abcdefabcdef",
    nowMs: NOW,
    ttlMs: 7_200_000,
    holder: { kind: "user" },
  });
  assert.equal(l.name, "hz-0123456789");
  assert.equal(l.serverName, "nixpool-0123456789");
  assert.equal(l.expiresAt, "2026-11-27T12:00:00.000Z");
  const labels = leaseLabels(l);
  assert.deepEqual(labels, {
    nixpool: "1",
    "nixpool-owner": "abcdefabcdef",
    "nixpool-lease": "0123456789",
    "nixpool-expires": String(NOW / 1000 + 7200),
  });
  for (const v of Object.values(labels)) assert.match(v, LABEL_VALUE);
  assert.throws(() => newLease({ id: "xyz", owner: "o", nowMs: NOW, ttlMs: 1, holder: { kind: "user" } }));
});

test("lease durations: 90m, 2h, 1h30m, 1d, 45s; a bare number is still minutes, with a note; anything else is a usage error", () => {
  const holder = { kind: "user" } as const;
  const ttl = (text: string, warnings: string[] = []) =>
    parseWorkerRequest({ ttl: text }, {}, holder, "2h", (l) => warnings.push(l)).ttlMs;
  assert.equal(ttl("90m"), 5_400_000);
  assert.equal(ttl("2h"), 7_200_000);
  assert.equal(ttl("1h30m"), 5_400_000);
  assert.equal(ttl("1d"), 86_400_000);
  assert.equal(ttl("45s"), 45_000);
  const warnings: string[] = [];
  assert.equal(ttl("15", warnings), 900_000);
  assert.deepEqual(warnings, [
    "warning: --ttl 15 is read as 15m (minutes), as before; a bare number will mean seconds in a later release: write 15m.",
  ]);
  const fromEnv: string[] = [];
  const req = parseWorkerRequest({}, { NIXPOOL_HCLOUD_BOOT_TIMEOUT: "3" }, holder, "2h", (l) =>
    fromEnv.push(l),
  );
  assert.equal(req.bootTimeoutMs, 180_000);
  assert.match(fromEnv[0] ?? "", /^warning: NIXPOOL_HCLOUD_BOOT_TIMEOUT 3 is read as 3m/);
  for (const bad of ["", "2x", "h", "1h 30m", "-1h"]) {
    assert.throws(
      () => ttl(bad),
      (e: { code?: string; exitCode?: number }) => e.code === "DURATION_INVALID" && e.exitCode === 2,
    );
  }
});

test("the reaper deletes expired servers, ours without a record or holder, and leaves others alone", () => {
  const owner = "aaaaaaaaaaaa";
  const server = (id: number, l: Lease, labels: Record<string, string> = {}) => ({
    id,
    name: l.serverName,
    labels: { ...leaseLabels(l), ...labels },
  });
  const live = lease("000000000a");
  const noRecord = lease("000000000b");
  const expired = lease("000000000c", { expiresAt: new Date(NOW - 1000).toISOString() });
  const othersLive = lease("000000000d", { owner: "bbbbbbbbbbbb" });
  const othersExpired = lease("000000000e", {
    owner: "bbbbbbbbbbbb",
    expiresAt: new Date(NOW - 1).toISOString(),
  });
  const deadHolder = lease("000000000f", { holder: { kind: "process", pid: 4242, host: "h" } });
  const liveHolder = lease("0000000010", { holder: { kind: "process", pid: 1, host: "h" } });
  const orphanRecord = lease("0000000011", { holder: { kind: "process", pid: 4242, host: "h" } });
  const expiredRecord = lease("0000000012", { expiresAt: new Date(NOW - 1).toISOString() });
  const plan = planReap({
    servers: [
      server(1, live),
      server(2, noRecord),
      server(3, expired),
      server(4, othersLive),
      server(5, othersExpired),
      server(6, deadHolder),
      server(7, liveHolder),
      { id: 8, name: "unrelated", labels: { env: "prod" } },
      { id: 9, name: "no-expiry", labels: { [LABELS.managed]: "1", [LABELS.owner]: owner } },
    ],
    leases: [live, expired, deadHolder, liveHolder, orphanRecord, expiredRecord],
    owner,
    nowMs: NOW,
    isHolderAlive: (h) => h.pid !== 4242,
  });
  assert.deepEqual(
    plan.deleteServers.map((d) => [d.server.id, d.reason]),
    [
      [2, "owner record gone"],
      [3, "lease expired"],
      [5, "lease expired"],
      [6, "holder process gone"],
      [9, "no expiry label"],
    ],
  );
  assert.deepEqual(
    plan.dropLeases.map((d) => d.lease.id),
    ["0000000011", "0000000012"],
  );
});

test("cloud-init user_data carries the pinned host key, root's login key and the nix.conf the emulator reads", () => {
  const ud = renderCloudInit({
    hostname: "nixpool-0123456789",
    hostKeyPrivate: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
    hostKeyPublic: "ssh-ed25519 AAAAhost nixpool\n",
    authorizedKeys: ["ssh-ed25519 AAAAlogin nixpool-hz"],
    maxJobs: 8,
    systemFeatures: ["big-parallel"],
  });
  assert.ok(ud.startsWith("#cloud-config\n"));
  const parsed = parseUserData(ud);
  assert.equal(
    parsed.hostKeyPrivate,
    "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
  );
  assert.equal(parsed.hostKeyPublic, "ssh-ed25519 AAAAhost nixpool");
  assert.deepEqual(parsed.authorizedKeys, ["ssh-ed25519 AAAAlogin nixpool-hz"]);
  // The worker's system (a profile switched on wake) is included last, so it wins.
  assert.equal(
    parsed.nixConf,
    `${renderWorkerNixConf({ maxJobs: 8, systemFeatures: ["big-parallel"] })}!include ${WORKER_SYSTEM_PROFILE}/nix.conf\n`,
  );
  assert.match(parsed.nixConf ?? "", /^max-jobs = 8$/m);
  assert.match(parsed.nixConf ?? "", /^trusted-users = root$/m);
});

test("worker flags: defaults, auto with minimums, conflicts and --on", () => {
  const holder = { kind: "user" } as const;
  const d = parseWorkerRequest({}, {}, holder, "2h");
  assert.deepEqual(
    {
      type: d.type,
      req: d.requirements,
      loc: d.location,
      image: d.image,
      ttl: d.ttlMs,
      boot: d.bootTimeoutMs,
    },
    {
      type: "auto",
      req: { minCores: 2, minMemory: 2 },
      loc: "fsn1",
      image: "debian-12",
      ttl: 7_200_000,
      boot: 600_000,
    },
  );
  const e = parseWorkerRequest(
    { minCores: "4", ttl: "30m" },
    { NIXPOOL_HCLOUD_LOCATION: "hel1", NIXPOOL_HCLOUD_BOOT_TIMEOUT: "20s" },
    holder,
    "2h",
  );
  assert.deepEqual(
    [e.requirements.minCores, e.location, e.ttlMs, e.bootTimeoutMs],
    [4, "hel1", 1_800_000, 20_000],
  );
  assert.throws(
    () => parseWorkerRequest({ type: "cx22", minCores: "4" }, {}, holder, "2h"),
    /--type names a server type/,
  );
  assert.throws(() => parseWorkerRequest({ minMemory: "-1" }, {}, holder, "2h"), /positive number/);
  assert.throws(() => parseWorkerRequest({ provider: "aws" }, {}, holder, "2h"), /no worker provider "aws"/);
  assert.deepEqual(parseOn("hetzner"), {});
  assert.deepEqual(parseOn("hetzner:cx32"), { type: "cx32" });
  assert.throws(
    () => parseOn("aws"),
    (x: { code?: string }) => x.code === "BUILD_ON_INVALID",
  );
  assert.match(
    renderShellRc(),
    /nix_on_worker\(\) \{ nix-build --max-jobs 0 --builders "\$NIXPOOL_WORKER_MACHINES"/,
  );
});
