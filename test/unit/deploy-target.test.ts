import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseInventory } from "../../src/config/inventory-parse.js";
import { normaliseTargets } from "../../src/config/schema.js";
import {
  DEFAULT_PROFILE,
  mergeTargets,
  pinnedHostKey,
  selectTargets,
  targetFromBuilder,
} from "../../src/core/deploy/target.js";
import { isNixpoolError, type NixpoolError } from "../../src/core/errors.js";
import { SAMPLE_KEY as KEY, sampleBuilder } from "../helpers/builders.js";

function errorOf(f: () => unknown): NixpoolError {
  try {
    f();
  } catch (e) {
    assert.ok(isNixpoolError(e));
    return e;
  }
  assert.fail("expected an error");
}

const parse = (text: string) => normaliseTargets(parseInventory(text, "inv.toml"));

describe("[targets.NAME] in nixpool.toml", () => {
  it("fills the defaults: port 22, no sudo, NixOS's system profile", () => {
    assert.deepEqual(parse(`[targets.web]\nhost = "10.0.0.5"\nhostKey = "${KEY}"\n`), [
      {
        name: "web",
        host: "10.0.0.5",
        port: 22,
        user: undefined,
        hostKey: KEY,
        identityFile: undefined,
        sudo: false,
        profile: DEFAULT_PROFILE,
        source: "inventory",
      },
    ]);
    assert.equal(DEFAULT_PROFILE, "/nix/var/nix/profiles/system");
  });

  it("takes every field", () => {
    const [t] = parse(
      `[targets.web]\nhost = "web.example.org"\nport = 2222\nuser = "deploy"\nhostKey = "${KEY} root@web"\n` +
        `identityFile = "/root/.ssh/deploy"\nsudo = true\nprofile = "/nix/var/nix/profiles/per-user/deploy/app"\n`,
    );
    assert.deepEqual(t, {
      name: "web",
      host: "web.example.org",
      port: 2222,
      user: "deploy",
      hostKey: `${KEY} root@web`,
      identityFile: "/root/.ssh/deploy",
      sudo: true,
      profile: "/nix/var/nix/profiles/per-user/deploy/app",
      source: "inventory",
    });
  });

  const cases: [string, string, RegExp][] = [
    [
      "no host key",
      `host = "h"`,
      /^inv\.toml: targets\.t1\.hostKey: is required: the target's public host key/,
    ],
    ["bad host key", `host = "h"\nhostKey = "AAAA"`, /targets\.t1\.hostKey: must be one public key line/],
    ["no host", `hostKey = "${KEY}"`, /targets\.t1\.host: must be string/],
    ["port", `host = "h"\nhostKey = "${KEY}"\nport = 0`, /targets\.t1\.port: must be ≥ 1/],
    ["sudo type", `host = "h"\nhostKey = "${KEY}"\nsudo = "yes"`, /targets\.t1\.sudo: must be true or false/],
    [
      "sudo as root",
      `host = "h"\nhostKey = "${KEY}"\nuser = "root"\nsudo = true`,
      /targets\.t1\.sudo: must be false for user root/,
    ],
    [
      "relative profile",
      `host = "h"\nhostKey = "${KEY}"\nprofile = "system"`,
      /targets\.t1\.profile: must be an absolute path/,
    ],
    [
      "profile with space",
      `host = "h"\nhostKey = "${KEY}"\nprofile = "/a b"`,
      /targets\.t1\.profile: must be an absolute path/,
    ],
    [
      "profile with ..",
      `host = "h"\nhostKey = "${KEY}"\nprofile = "/nix/../etc"`,
      /targets\.t1\.profile: must not contain \.\./,
    ],
    [
      "unknown field",
      `host = "h"\nhostKey = "${KEY}"\nprotocol = "ssh"`,
      /targets\.t1: unknown field protocol/,
    ],
  ];
  for (const [name, body, message] of cases) {
    it(`refuses: ${name}`, () => {
      const e = errorOf(() => parse(`[targets.t1]\n${body}\n`));
      assert.equal(e.code, "CONFIG_INVALID");
      assert.equal(e.exitCode, 2);
      assert.match(e.message, message);
    });
  }

  it("refuses a bad target name", () => {
    assert.match(
      errorOf(() => parse(`[targets."-x"]\nhost = "h"\nhostKey = "${KEY}"\n`)).message,
      /targets\.-x: target name must start/,
    );
  });
});

describe("builders are targets", () => {
  const b1 = sampleBuilder({
    name: "b1",
    host: "10.0.0.1",
    port: 2201,
    user: "nix",
    hostKey: KEY,
    identityFile: "/k",
  });
  const b2 = sampleBuilder({ name: "b2" });
  const web = parse(`[targets.web]\nhost = "10.0.0.9"\nhostKey = "${KEY}"\n`)[0]!;

  it("a builder as a target keeps its host, port, user, key and identity", () => {
    assert.deepEqual(targetFromBuilder(b1), {
      name: "b1",
      host: "10.0.0.1",
      port: 2201,
      user: "nix",
      hostKey: KEY,
      identityFile: "/k",
      sudo: false,
      profile: DEFAULT_PROFILE,
      source: "builder",
    });
  });

  it("a [targets] entry with a builder's name overrides that builder for deploys", () => {
    const rootB1 = { ...web, name: "b1", user: "root" };
    const all = mergeTargets([web, rootB1], [b1, b2]);
    assert.deepEqual(
      all.map((t) => [t.name, t.source, t.user]),
      [
        ["web", "inventory", undefined],
        ["b1", "inventory", "root"],
        ["b2", "builder", undefined],
      ],
    );
  });

  it("selects targets in the order named; an unknown name is TARGET_UNKNOWN (2)", () => {
    const all = mergeTargets([web], [b1, b2]);
    assert.deepEqual(
      selectTargets(all, ["b2", "web"]).map((t) => t.name),
      ["b2", "web"],
    );
    const e = errorOf(() => selectTargets(all, ["nope"]));
    assert.equal(e.code, "TARGET_UNKNOWN");
    assert.equal(e.exitCode, 2);
    assert.match(e.message, /"nope"/);
  });

  it("a builder without a pinned key cannot be deployed to", () => {
    assert.equal(pinnedHostKey(targetFromBuilder(b1)), KEY);
    const e = errorOf(() => pinnedHostKey(targetFromBuilder(b2)));
    assert.equal(e.code, "TARGET_HOST_KEY_MISSING");
    assert.match(e.message, /^Target b2 \(10\.0\.0\.1\) has no pinned host key/);
    assert.match(e.hint ?? "", /\[builders\.b2\]/);
  });
});
