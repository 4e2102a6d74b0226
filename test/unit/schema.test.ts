import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseInventory } from "../../src/config/inventory-parse.js";
import { resolveStateDir } from "../../src/config/paths.js";
import { normaliseBuilders } from "../../src/config/schema.js";
import { isNixpoolError, type NixpoolError } from "../../src/core/errors.js";
import { SAMPLE_KEY as KEY } from "../helpers/builders.js";

/** The error parseInventory throws for text, or a failed assertion. */
function errorOf(text: string): NixpoolError {
  try {
    parseInventory(text, "inv.toml");
  } catch (e) {
    assert.ok(isNixpoolError(e));
    return e;
  }
  assert.fail("expected an error");
}

describe("inventory schema: defaults", () => {
  it("fills Nix's defaults and the local system", () => {
    const [b] = normaliseBuilders(parseInventory('[builders.b1]\nhost = "h"\n', "inv.toml"), "aarch64-linux");
    assert.deepEqual(b, {
      name: "b1",
      host: "h",
      port: 22,
      user: undefined,
      protocol: "ssh",
      systems: ["aarch64-linux"],
      maxJobs: 1,
      speedFactor: 1,
      supportedFeatures: [],
      mandatoryFeatures: [],
      hostKey: undefined,
      identityFile: undefined,
      tags: [],
      trust: "trusted",
      source: "inventory",
    });
  });

  it("takes [defaults] system over the local one", () => {
    const file = parseInventory('[defaults]\nsystem = "i686-linux"\n[builders.b1]\nhost = "h"\n', "inv.toml");
    assert.deepEqual(normaliseBuilders(file, "x86_64-linux")[0]?.systems, ["i686-linux"]);
  });

  it("accepts an empty file and keeps builders in file order", () => {
    assert.deepEqual(normaliseBuilders(parseInventory("", "inv.toml"), "x86_64-linux"), []);
    const file = parseInventory('[builders.z]\nhost = "a"\n[builders.a]\nhost = "b"\n', "inv.toml");
    assert.deepEqual(
      normaliseBuilders(file, "x86_64-linux").map((b) => b.name),
      ["z", "a"],
    );
  });

  it("trims a host key and accepts a comment", () => {
    const file = parseInventory(`[builders.b1]\nhost = "h"\nhostKey = "  ${KEY} root@h "\n`, "inv.toml");
    assert.equal(file.builders["b1"]?.hostKey, `${KEY} root@h`);
  });
});

describe("inventory schema: errors name the file, builder and field", () => {
  const cases: [string, string, RegExp][] = [
    ["maxJobs 0", "maxJobs = 0", /^inv\.toml: builders\.b1\.maxJobs: must be ≥ 1$/],
    [
      "fractional speedFactor",
      "speedFactor = 1.5",
      /builders\.b1\.speedFactor: must be an integer \(Nix 2\.8\)/,
    ],
    ["port range", "port = 70000", /builders\.b1\.port: must be ≤ 65535/],
    ["port type", 'port = "22"', /builders\.b1\.port: must be number/],
    ["protocol", 'protocol = "http"', /builders\.b1\.protocol: must be "ssh" or "ssh-ng"/],
    ["trust", 'trust = "maybe"', /builders\.b1\.trust: must be "trusted" or "untrusted"/],
    ["unknown field", 'protocl = "ssh"', /builders\.b1: unknown field protocl/],
    ["empty systems", "systems = []", /builders\.b1\.systems: must list at least one system/],
    ["bad system", 'systems = ["x86 64"]', /builders\.b1\.systems\[0\]: must be a system/],
    ["host key", 'hostKey = "AAAA"', /builders\.b1\.hostKey: must be one public key line/],
    [
      "identity with space",
      'identityFile = "/a b"',
      /builders\.b1\.identityFile: must be a path without spaces/,
    ],
    ["user", 'user = "a b"', /builders\.b1\.user: must be a user name/],
    [
      "mandatory not supported",
      'mandatoryFeatures = ["kvm"]',
      /builders\.b1\.mandatoryFeatures: "kvm" must also be listed in supportedFeatures/,
    ],
  ];
  for (const [name, line, message] of cases) {
    it(name, () => {
      const e = errorOf(`[builders.b1]\nhost = "h"\n${line}\n`);
      assert.equal(e.code, "CONFIG_INVALID");
      assert.equal(e.exitCode, 2);
      assert.match(e.message, message);
      assert.match(e.hint ?? "", /docs\/configuration\.md/);
    });
  }

  it("a missing host and a bad builder name", () => {
    assert.match(errorOf("[builders.b1]\nport = 22\n").message, /builders\.b1\.host: must be string/);
    assert.match(errorOf('[builders."-x"]\nhost = "h"\n').message, /builders\.-x: builder name must start/);
  });

  it("lists every problem at once", () => {
    const e = errorOf('[builders.b1]\nhost = "h"\nmaxJobs = 0\n[builders.b2]\nhost = "h"\nport = 0\n');
    assert.match(
      e.message,
      /2 problems:\n {2}builders\.b1\.maxJobs: must be ≥ 1\n {2}builders\.b2\.port: must be ≥ 1/,
    );
    assert.deepEqual(e.details?.["problems"], [
      "builders.b1.maxJobs: must be ≥ 1",
      "builders.b2.port: must be ≥ 1",
    ]);
  });

  it("gives line and column for TOML syntax errors", () => {
    const e = errorOf('[builders.b1]\nhost = "h"\nmaxJobs = \n');
    assert.equal(e.code, "CONFIG_SYNTAX");
    assert.match(e.message, /^inv\.toml:3:11: /);
    assert.deepEqual({ line: e.details?.["line"], column: e.details?.["column"] }, { line: 3, column: 11 });
  });

  it("refuses unknown top-level tables", () => {
    assert.match(errorOf('[builder.b1]\nhost = "h"\n').message, /unknown field builder/);
  });
});

describe("state directory precedence", () => {
  const env = (e: Record<string, string>, uid = 1000) => ({ env: e, cwd: "/work", uid });
  it("flag, then NIXPOOL_STATE_DIR, then root's or the user's default", () => {
    assert.equal(resolveStateDir("st", env({ NIXPOOL_STATE_DIR: "/e" })), "/work/st");
    assert.equal(resolveStateDir(undefined, env({ NIXPOOL_STATE_DIR: "/e" })), "/e");
    assert.equal(resolveStateDir(undefined, env({}, 0)), "/var/lib/nixpool");
    assert.equal(resolveStateDir(undefined, env({ HOME: "/home/u" })), "/home/u/.local/state/nixpool");
    assert.equal(resolveStateDir(undefined, env({ HOME: "/home/u", XDG_STATE_HOME: "/x" })), "/x/nixpool");
  });
});

describe("inventory schema: [policy]", () => {
  it("reads trustedOnly globs and untrustedResults, with defaults", () => {
    const inv = parseInventory(
      '[policy]\ntrustedOnly = ["*-bootstrap-tools*", "secret-?"]\nuntrustedResults = "verify"\n',
      "inv.toml",
    );
    assert.deepEqual(inv.policy, {
      trustedOnly: ["*-bootstrap-tools*", "secret-?"],
      untrustedResults: "verify",
    });
    assert.deepEqual(parseInventory("[policy]\n", "inv.toml").policy, {
      trustedOnly: [],
      untrustedResults: "accept",
    });
    assert.equal(parseInventory("", "inv.toml").policy, undefined);
  });

  it("names the path of a bad value", () => {
    assert.match(
      errorOf('[policy]\nuntrustedResults = "maybe"\n').message,
      /inv\.toml: policy\.untrustedResults: must be "accept", "verify" or "refuse"/,
    );
    assert.match(
      errorOf('[policy]\ntrustedOnly = ["a b"]\n').message,
      /policy\.trustedOnly\[0\]: must be a derivation name glob/,
    );
    assert.match(errorOf("[policy]\ntrustedonly = []\n").message, /policy: unknown field trustedonly/);
  });
});
