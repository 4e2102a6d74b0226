import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Builder } from "../../src/core/builder.js";
import { SAMPLE_KEY, sampleBuilder } from "../helpers/builders.js";
import { nixIndentedString, nixosHostName, nixString, renderNixosModule } from "../../src/core/nixos.js";

const KEY = SAMPLE_KEY;

const builder = (over: Partial<Builder> = {}): Builder =>
  sampleBuilder({
    ...{
      user: "root",
      maxJobs: 4,
      speedFactor: 2,
      supportedFeatures: ["big-parallel", "kvm"],
      mandatoryFeatures: ["kvm"],
      hostKey: `${KEY} comment`,
      identityFile: "/root/.ssh/id",
    },
    ...over,
  });

describe("Nix literals", () => {
  it("escapes strings", () => {
    assert.equal(nixString('a"b\\c${d}\n'), '"a\\"b\\\\c\\${d}\\n"');
    assert.equal(nixString("plain"), '"plain"');
  });

  it("escapes indented strings", () => {
    assert.equal(nixIndentedString(["a ''b'' ${c}", "", "d"], ""), "''\n  a '''b''' ''${c}\n\n  d\n''");
  });
});

describe("NixOS module renderer", () => {
  it("declares each builder in nix.buildMachines with every field", () => {
    const text = renderNixosModule([builder()]);
    for (const line of [
      'hostName = "10.0.0.1";',
      'sshUser = "root";',
      'sshKey = "/root/.ssh/id";',
      'protocol = "ssh-ng";',
      'systems = [ "x86_64-linux" ];',
      "maxJobs = 4;",
      "speedFactor = 2;",
      'supportedFeatures = [ "big-parallel" "kvm" ];',
      'mandatoryFeatures = [ "kvm" ];',
      `publicHostKey = "${Buffer.from(KEY).toString("base64")}";`,
      "nix.distributedBuilds = true;",
    ]) {
      assert.ok(text.includes(line), line);
    }
    assert.match(
      text,
      /nixpool-b1 = \{\n\s+hostNames = \[ "10\.0\.0\.1" \];\n\s+publicKey = "ssh-ed25519 \S+";/,
    );
    assert.doesNotMatch(text, /extraConfig/);
  });

  it("routes a builder on another port through an ssh alias", () => {
    const b = builder({ port: 2222, user: undefined, identityFile: undefined, hostKey: undefined });
    assert.equal(nixosHostName(b), "nixpool-b1");
    const text = renderNixosModule([b]);
    assert.match(
      text,
      /programs\.ssh\.extraConfig = ''\n {4}Host nixpool-b1\n {6}HostName 10\.0\.0\.1\n {6}Port 2222\n {6}HostKeyAlias nixpool-b1\n {2}'';/,
    );
    assert.doesNotMatch(text, /sshUser|sshKey|publicHostKey/);
    assert.match(text, /programs\.ssh\.knownHosts = \{ \};/);
  });

  it("renders an empty pool", () => {
    assert.match(renderNixosModule([]), /nix\.buildMachines = \[ \];/);
  });

  it("quotes builder names that are not identifiers", () => {
    assert.match(renderNixosModule([builder({ name: "b.2" })]), /"nixpool-b\.2" = \{/);
  });
});
