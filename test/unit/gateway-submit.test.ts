import { test } from "node:test";
import assert from "node:assert/strict";
import { isNixpoolError } from "../../src/core/errors.js";
import { mapBuildResult } from "../../src/serve/gateway/gateway-build.js";
import { fromGivenJson, GivenDerivationSchema, toGivenJson } from "../../src/serve/given-derivation.js";
import { givenDerivationsOf, mayCancel, submitterOf } from "../../src/serve/submit-checks.js";
import { renderGatewayClientConfig } from "../../src/core/gateway-client.js";
import type { Builder } from "../../src/core/builder.js";

const P = (c: string, name: string) => `/nix/store/${c.repeat(32)}-${name}`;
const drvPath = P("a", "hello.drv");
const basic = {
  outputs: new Map([["out", { path: P("b", "hello"), hashAlgo: "", hash: "" }]]),
  inputSrcs: [P("d", "dep")],
  platform: "x86_64-linux",
  builder: "/bin/sh",
  args: ["-c", "echo hi > $out"],
  env: new Map([["out", P("b", "hello")]]),
};

test("a gateway names its client only from a privileged uid on the socket", () => {
  const uids = new Set([0, 990]);
  assert.deepEqual(submitterOf({ user: "root", uid: 0, via: "socket" }, "alice", uids), {
    user: "gateway:alice",
    uid: 0,
    via: "socket",
  });
  assert.equal(submitterOf({ user: "nixpool", uid: 990, via: "socket" }, "ci", uids).user, "gateway:ci");
  const bob = { user: "bob", uid: 1001, via: "socket" } as const;
  assert.equal(submitterOf(bob, undefined, uids), bob);
  assert.throws(
    () => submitterOf(bob, "alice", uids),
    (e: unknown) => isNixpoolError(e) && e.code === "SUBMIT_FORBIDDEN",
  );
  assert.throws(
    () => submitterOf({ user: "token", via: "token" }, "alice", uids),
    (e: unknown) => isNixpoolError(e) && e.code === "SUBMIT_FORBIDDEN",
  );
});

test("the gateway's account may cancel the builds it submitted for its clients (a timeout, a client gone), nobody else's", () => {
  const uids = new Set([0, 990]);
  const gatewayBuild = submitterOf({ user: "nixpool", uid: 990, via: "socket" }, "alice", uids);
  const bobs = { user: "bob", uid: 1001, via: "socket" } as const;
  assert.equal(mayCancel(gatewayBuild, { user: "nixpool", uid: 990, via: "socket" }, uids), true);
  assert.equal(mayCancel(gatewayBuild, { user: "root", uid: 0, via: "socket" }, uids), true);
  assert.equal(mayCancel(gatewayBuild, bobs, uids), false);
  assert.equal(mayCancel(gatewayBuild, { user: "token", via: "token" }, uids), false);
  assert.equal(mayCancel(bobs, { user: "nixpool", uid: 990, via: "socket" }, uids), false);
  assert.equal(mayCancel(bobs, bobs, uids), true);
  assert.equal(mayCancel(bobs, { user: "bob", via: "token" }, uids), false);
});

test("a given derivation travels as JSON and becomes a derivation with every input a source", () => {
  const json = toGivenJson(basic);
  assert.ok(GivenDerivationSchema.safeParse(JSON.parse(JSON.stringify(json))).success);
  const d = fromGivenJson(json);
  assert.equal(d.inputDrvs.size, 0);
  assert.deepEqual(d.inputSrcs, basic.inputSrcs);
  assert.deepEqual(d.outputs, basic.outputs);
  assert.ok(!GivenDerivationSchema.safeParse({ ...json, inputSrcs: ["/etc/passwd"] }).success);
  assert.ok(!GivenDerivationSchema.safeParse({ ...json, outputs: {} }).success);
  const map = givenDerivationsOf({ derivations: [{ drv: drvPath, output: "out", given: json }], label: "x" });
  assert.deepEqual([...(map?.keys() ?? [])], [drvPath]);
  assert.equal(givenDerivationsOf({ derivations: [{ drv: drvPath, output: "out" }], label: "x" }), undefined);
  assert.throws(
    () =>
      givenDerivationsOf({
        derivations: [
          { drv: drvPath, output: "out", given: json },
          { drv: P("c", "other.drv"), output: "out" },
        ],
        label: "x",
      }),
    (e: unknown) => isNixpoolError(e) && e.code === "SUBMIT_INVALID",
  );
});

test("a coordinator build maps to Nix's BuildResult", () => {
  const rec = (status: string, error: string | null = null) => ({
    drv: drvPath,
    name: "hello",
    status: status as "built",
    builder: "local1",
    slot: 1,
    attempts: 1,
    retries: [],
    readyMs: 0,
    startedMs: 5_000,
    finishedMs: 9_000,
    spans: [],
    error,
  });
  const detail = (status: "succeeded" | "failed", r: ReturnType<typeof rec>) => ({
    id: "b1",
    label: "x",
    status,
    outputs: [],
    report: {
      records: [r],
      startedAtMs: 1_000_000,
      wallMs: 0,
      builders: [],
      stats: {
        evalMs: 0,
        connectMs: 0,
        pathsUploaded: 0,
        pathsDownloaded: 0,
        bytesUploaded: 0,
        bytesDownloaded: 0,
        derivationsInClosure: 1,
        cpuMs: 0,
        maxRssMb: 0,
      },
    },
  });
  const base = { drvPath, failure: undefined, timedOut: undefined, tail: [], startMs: 1000, stopMs: 2000 };
  const outPath = `/nix/store/${"b".repeat(32)}-hello`;
  const drv = {
    outputs: new Map([["out", { path: outPath, hashAlgo: "", hash: "" }]]),
    inputSrcs: [],
    platform: "x86_64-linux",
    builder: "/bin/sh",
    args: ["-c", "echo hi > $out"],
    env: new Map([
      ["out", outPath],
      ["name", "hello"],
    ]),
  };
  const built = mapBuildResult({ ...base, drv, detail: detail("succeeded", rec("built")) });
  assert.deepEqual(
    [built.statusName, built.timesBuilt, built.startTime, built.stopTime],
    ["Built", 1, 1005, 1009],
  );
  // DrvOutputs as a builder reports them (checked against Nix in nix-serve-session.test.ts).
  assert.equal(built.builtOutputs.length, 1);
  assert.match(built.builtOutputs[0]?.id ?? "", /^sha256:[0-9a-f]{64}!out$/);
  assert.equal(built.builtOutputs[0]?.outPath, `${"b".repeat(32)}-hello`);
  assert.equal(
    mapBuildResult({ ...base, detail: detail("succeeded", rec("cached")) }).statusName,
    "AlreadyValid",
  );
  const failed = mapBuildResult({
    ...base,
    detail: detail("failed", rec("failed", "PermanentFailure on local1: builder failed with exit code 3")),
    tail: ["the reason is here"],
  });
  assert.equal(failed.statusName, "PermanentFailure");
  const failedOutputs = mapBuildResult({
    ...base,
    drv,
    detail: detail("failed", rec("failed", "PermanentFailure on local1: x")),
  }).builtOutputs;
  assert.deepEqual(failedOutputs, []);
  assert.match(failed.errorMsg, /exit code 3[\s\S]*> the reason is here/);
  assert.equal(
    mapBuildResult({ ...base, detail: detail("failed", rec("failed", "TimedOut on local2: silent")) })
      .statusName,
    "TimedOut",
  );
  const timedOut = mapBuildResult({
    ...base,
    detail: undefined,
    timedOut: "timed out after 2 seconds of silence",
  });
  assert.equal(timedOut.statusName, "TimedOut");
  const lost = mapBuildResult({ ...base, detail: undefined, failure: "the coordinator went away" });
  assert.equal(lost.statusName, "MiscFailure");
  assert.match(lost.errorMsg, /went away/);
});

test("config client: the pool as one machines line, pinned, with the sum of the slots", () => {
  const b = (name: string, maxJobs: number, features: string[]): Builder => ({
    name,
    host: "10.0.0.1",
    port: 22,
    user: "root",
    protocol: "ssh-ng",
    systems: ["x86_64-linux"],
    maxJobs,
    speedFactor: 1,
    supportedFeatures: features,
    mandatoryFeatures: [],
    hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOPh1zGlyXL32/Aq4baq8rET644pSi+N+2z4OUZIzu5W",
    identityFile: undefined,
    tags: [],
    trust: "trusted",
    source: "inventory",
  });
  const hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOPh1zGlyXL32/Aq4baq8rET644pSi+N+2z4OUZIzu5W";
  const cfg = renderGatewayClientConfig({
    client: "alice",
    host: "pool.example.org",
    port: 22,
    user: "nixpool",
    hostKey,
    identityFile: "/etc/nix/nixpool-gateway_ed25519",
    builders: [b("b1", 2, ["kvm"]), b("b2", 4, ["big-parallel"])],
    machinesFile: "/etc/nix/machines",
  });
  assert.equal(
    cfg.machinesLine,
    `ssh://nixpool@pool.example.org x86_64-linux /etc/nix/nixpool-gateway_ed25519 6 1 big-parallel,kvm - ${Buffer.from(hostKey).toString("base64")}`,
  );
  assert.equal(cfg.knownHostsLine, `pool.example.org ${hostKey}`);
  assert.match(cfg.nixConf, /^builders = @\/etc\/nix\/machines$/m);
  assert.match(cfg.nixConf, /^builders-use-substitutes = true$/m);
  assert.match(cfg.nixos, /sshUser = "nixpool";/);
  assert.equal(cfg.sshConfig, undefined);
  const other = renderGatewayClientConfig({
    client: "alice",
    host: "pool.example.org",
    port: 2222,
    user: "nixpool",
    hostKey,
    identityFile: "/k",
    builders: [b("b1", 2, [])],
    machinesFile: "/etc/nix/machines",
  });
  assert.match(other.machinesLine, /^ssh:\/\/nixpool-pool /);
  assert.match(other.sshConfig ?? "", /Port 2222/);
});
