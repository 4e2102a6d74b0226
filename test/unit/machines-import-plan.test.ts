import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { analyseStoreUri, deriveBuilderName, planImport } from "../../src/core/machines-import-plan.js";
import { SAMPLE_KEY as KEY } from "../helpers/builders.js";
import { parseInMemory as parse } from "../helpers/machines-files.js";

const KEY64 = Buffer.from(KEY).toString("base64");

describe("analyseStoreUri", () => {
  it("splits ssh and ssh-ng URIs into protocol, user and host", () => {
    assert.deepEqual(analyseStoreUri("ssh://h"), {
      kind: "ssh",
      protocol: "ssh",
      user: undefined,
      host: "h",
    });
    assert.deepEqual(analyseStoreUri("ssh-ng://me@h.example.com"), {
      kind: "ssh",
      protocol: "ssh-ng",
      user: "me",
      host: "h.example.com",
    });
  });

  it("explains what it cannot manage", () => {
    const reason = (u: string) => {
      const r = analyseStoreUri(u);
      return r.kind === "unsupported" ? r.reason : "supported";
    };
    assert.match(reason("local"), /local store/);
    assert.match(reason("/nix/store2"), /local store/);
    assert.match(reason("daemon"), /local store/);
    assert.match(reason("http://cache"), /http:\/\/ stores are not supported/);
    assert.match(reason("ssh://h?remote-store=/x"), /store parameters/);
    assert.match(reason("ssh://h/path"), /holds a "\/"/);
    assert.match(reason("ssh://h:2222"), /host:port/);
    assert.match(reason("ssh://@h"), /empty user/);
    assert.equal(reason("ssh://[::1]"), "supported");
  });
});

describe("planImport", () => {
  it("derives unique, valid names from hosts", () => {
    assert.equal(deriveBuilderName("b1.example.com", false), "b1");
    assert.equal(deriveBuilderName("b1.example.com", true), "b1.example.com");
    assert.equal(deriveBuilderName("10.0.0.5", false), "10-0-0-5");
    assert.equal(deriveBuilderName("[fe80::1]", false), "fe80-1");
    assert.equal(deriveBuilderName("_x", false), "x");
    assert.equal(deriveBuilderName("___", false), "builder");
  });

  it("maps machines to inventory entries and skips what nixpool cannot manage", async () => {
    const parsed = await parse(
      [
        `b1.example.com x86_64-linux /k 4 2 big kvm ${KEY64}`,
        "ssh-ng://nix@b1.other.org - - 8",
        "ssh-ng://nix@b1.other.org",
        "local",
        "ssh://h:22",
        "zero - - 0",
        "slow - - 1 0 - - - junk",
      ].join("\n"),
    );
    const plan = planImport(parsed, { takenNames: ["slow"] });
    assert.deepEqual(
      plan.builders.map((b) => [b.name, b.at.line, b.entry]),
      [
        [
          "b1.example.com",
          1,
          {
            host: "b1.example.com",
            protocol: "ssh",
            systems: ["x86_64-linux"],
            maxJobs: 4,
            speedFactor: 2,
            supportedFeatures: ["big", "kvm"],
            mandatoryFeatures: ["kvm"],
            identityFile: "/k",
            hostKey: KEY,
          },
        ],
        ["b1.other.org", 2, { host: "b1.other.org", user: "nix", protocol: "ssh-ng", maxJobs: 8 }],
        ["b1.other.org-2", 3, { host: "b1.other.org", user: "nix", protocol: "ssh-ng" }],
        ["slow-2", 7, { host: "slow", protocol: "ssh" }],
      ],
    );
    assert.deepEqual(
      plan.skipped.map((s) => [s.at.line, s.uri]),
      [
        [4, "local"],
        [5, "ssh://h:22"],
        [6, "zero"],
      ],
    );
    assert.deepEqual(
      plan.diagnostics.map((d) => [d.at.line, d.code]),
      [
        [7, "MACHINES_SPEED_ZERO"],
        [7, "MACHINES_EXTRA_FIELDS"],
      ],
    );
  });

  it("writes explicit systems for '-' only when asked", async () => {
    const parsed = await parse("a\n");
    assert.equal(planImport(parsed).builders[0]?.entry.systems, undefined);
    assert.deepEqual(planImport(parsed, { defaultSystems: ["x86_64-linux"] }).builders[0]?.entry.systems, [
      "x86_64-linux",
    ]);
  });
});
