import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  applySchemeRule,
  checkPublicKeyLine,
  decodeNixBase64,
  effectiveMachine,
  parseNixUnsigned,
} from "../../src/core/machines-parse.js";
import { SAMPLE_KEY as KEY } from "../helpers/builders.js";
import { parseInMemory as parse } from "../helpers/machines-files.js";

const KEY64 = Buffer.from(KEY).toString("base64");

describe("Nix 2.8 number and base64 rules", () => {
  it("accepts what string2Int<unsigned> accepts and refuses the rest", () => {
    assert.equal(parseNixUnsigned("4"), 4);
    assert.equal(parseNixUnsigned("+3"), 3);
    assert.equal(parseNixUnsigned("007"), 7);
    assert.equal(parseNixUnsigned("0"), 0);
    assert.equal(parseNixUnsigned("4294967295"), 4294967295);
    for (const bad of ["4294967296", "-1", "-0", "+", "0x10", "1e3", "3x", "", " 1"]) {
      assert.equal(parseNixUnsigned(bad), undefined, bad);
    }
  });

  it("decodes base64 like Nix: stops at '=', refuses foreign characters before it", () => {
    assert.equal(decodeNixBase64(KEY64), KEY);
    assert.equal(decodeNixBase64("QUJD=!!"), "ABC");
    assert.equal(decodeNixBase64("!!!"), undefined);
    assert.equal(decodeNixBase64("QU-J"), undefined);
  });

  it("recognises public key lines by type and blob", () => {
    assert.equal(checkPublicKeyLine(`  ${KEY} comment here\n`), `${KEY} comment here`);
    assert.equal(checkPublicKeyLine("ssh-ed25519 notbase64!"), undefined);
    assert.equal(checkPublicKeyLine("hello world"), undefined);
    // A valid base64 blob for another key type does not pass as ed25519.
    assert.equal(checkPublicKeyLine(`ssh-rsa ${KEY.split(" ")[1]}`), undefined);
  });

  it("applies the scheme-less rule", () => {
    assert.equal(applySchemeRule("host"), "ssh://host");
    assert.equal(applySchemeRule("root@host"), "ssh://root@host");
    assert.equal(applySchemeRule("ssh-ng://host"), "ssh-ng://host");
    assert.equal(applySchemeRule("/some/store"), "/some/store");
    assert.equal(applySchemeRule("host/x"), "host/x");
    for (const w of ["auto", "daemon", "local", "local?root=/x", "daemon?a=b", "?x=y"]) {
      assert.equal(applySchemeRule(w), w);
    }
    assert.equal(applySchemeRule("localhost"), "ssh://localhost");
  });
});

describe("parseMachinesFile", () => {
  it("reads all 8 fields, '-' and absent fields as defaults", async () => {
    const r = await parse(
      `host1 x86_64-linux,i686-linux /k 4 2 kvm,big-parallel kvm ${KEY64}\nssh-ng://u@h2 - - - 0\n`,
    );
    assert.deepEqual(r.diagnostics, []);
    assert.equal(r.machines.length, 2);
    const [a, b] = r.machines;
    assert.deepEqual(
      { ...a, at: undefined, entry: undefined },
      {
        at: undefined,
        entry: undefined,
        uri: "host1",
        storeUri: "ssh://host1",
        systems: ["x86_64-linux", "i686-linux"],
        sshKey: "/k",
        maxJobs: 4,
        speedFactor: 2,
        supportedFeatures: ["big-parallel", "kvm"],
        mandatoryFeatures: ["kvm"],
        hostKeyBase64: KEY64,
        hostKey: KEY,
        extraFields: [],
      },
    );
    assert.equal(b?.storeUri, "ssh-ng://u@h2");
    assert.equal(b?.systems, undefined);
    assert.equal(b?.speedFactor, 0);
    assert.equal(b && effectiveMachine(b, "x86_64-linux").speedFactor, 1);
    assert.deepEqual(b && effectiveMachine(b, "x86_64-linux").systems, ["x86_64-linux"]);
  });

  it("splits on ';', cuts comments, skips empty pieces, keeps line numbers", async () => {
    const r = await parse("\n\n;;a;\n# only a comment\nb # trailing\nc#d e\n\tf\tx86_64-linux\t-\t2\r\n");
    assert.deepEqual(r.diagnostics, []);
    assert.deepEqual(
      r.machines.map((m) => [m.uri, m.at.line]),
      [
        ["a", 3],
        ["b", 5],
        ["c", 6],
        ["f", 7],
      ],
    );
    assert.equal(r.machines[3]?.maxJobs, 2);
  });

  it("reports every entry Nix 2.8 refuses, with its line", async () => {
    const r = await parse(
      [
        "ok",
        "  # indented comment",
        "   ",
        "a - - -1",
        "b - - - 99999999999",
        "c - - - - - - !!!",
        "-",
        "d\r",
        "\r",
      ].join("\n"),
    );
    assert.deepEqual(
      r.diagnostics.map((d) => [d.at.line, d.severity, d.code]),
      [
        [2, "error", "MACHINES_NO_URI"],
        [3, "error", "MACHINES_NO_URI"],
        [4, "error", "MACHINES_BAD_NUMBER"],
        [5, "error", "MACHINES_BAD_NUMBER"],
        [6, "error", "MACHINES_BAD_BASE64"],
        [7, "error", "MACHINES_NO_URI"],
        [9, "error", "MACHINES_NO_URI"],
      ],
    );
    assert.match(r.diagnostics[0]?.message ?? "", /store URL was not found/);
    assert.deepEqual(
      r.machines.map((m) => m.uri),
      ["ok", "d"],
    );
  });

  it("flags a host key that is valid base64 but no key line", async () => {
    const r = await parse(`a - - - - - - ${Buffer.from("not a key").toString("base64")}\n`);
    assert.deepEqual(
      r.diagnostics.map((d) => d.code),
      ["MACHINES_BAD_HOST_KEY"],
    );
  });

  it("follows @includes: absolute, relative to / like Nix's hook, missing ones warned", async () => {
    const r = await parse("@/etc/nix/more\n@ tmp/rel\n@/nope\n@\nlast\n", {
      "/etc/nix/more": "m1 aarch64-linux\n@/etc/nix/deeper\n",
      "/etc/nix/deeper": "m2\n",
      "/tmp/rel": "m3\n",
    });
    assert.deepEqual(
      r.machines.map((m) => [m.uri, m.at.file, m.at.line]),
      [
        ["m1", "/etc/nix/more", 1],
        ["m2", "/etc/nix/deeper", 1],
        ["m3", "/tmp/rel", 1],
        ["last", "/etc/nix/machines", 5],
      ],
    );
    assert.deepEqual(
      r.diagnostics.map((d) => [d.at.line, d.severity, d.code]),
      [
        [3, "warning", "MACHINES_INCLUDE_MISSING"],
        [4, "warning", "MACHINES_INCLUDE_EMPTY"],
      ],
    );
    assert.deepEqual(r.files, ["/etc/nix/machines", "/etc/nix/more", "/etc/nix/deeper", "/tmp/rel"]);
  });

  it("reports include cycles and unreadable includes as errors", async () => {
    const r = await parse("@/a\n@/dir\n", { "/a": "x\n@/b\n", "/b": "@/a\n" }, { "/dir": "EISDIR" });
    assert.deepEqual(
      r.diagnostics.map((d) => [d.at.file, d.at.line, d.code]),
      [
        ["/b", 1, "MACHINES_INCLUDE_CYCLE"],
        ["/etc/nix/machines", 2, "MACHINES_INCLUDE_UNREADABLE"],
      ],
    );
  });

  it("reads an indented @ as a machine, as Nix does, and warns", async () => {
    const r = await parse(" @/etc/nix/more\n", { "/etc/nix/more": "m1\n" });
    assert.equal(r.machines[0]?.storeUri, "@/etc/nix/more");
    assert.equal(r.diagnostics[0]?.code, "MACHINES_INDENTED_INCLUDE");
  });

  it("keeps system order and duplicates, sorts and dedupes features, keeps extra fields", async () => {
    const r = await parse("a x86_64-linux,,i686-linux,x86_64-linux - 1 1 b,a,a, c - extra more\n");
    const m = r.machines[0];
    assert.deepEqual(m?.systems, ["x86_64-linux", "i686-linux", "x86_64-linux"]);
    assert.deepEqual(m?.supportedFeatures, ["a", "b"]);
    assert.deepEqual(m?.mandatoryFeatures, ["c"]);
    assert.deepEqual(m?.extraFields, ["extra", "more"]);
  });
});
