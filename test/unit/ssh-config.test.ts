import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Builder } from "../../src/core/builder.js";
import { SAMPLE_KEY, sampleBuilder } from "../helpers/builders.js";
import { renderKnownHosts, renderSshConfig } from "../../src/core/ssh-config.js";

const KEY = SAMPLE_KEY;

const builder = (over: Partial<Builder> = {}): Builder => sampleBuilder({ ...{ hostKey: KEY }, ...over });

/** The options of one Host block, as a map of lower-cased keyword to value. */
function hostBlock(text: string, alias: string): Map<string, string> {
  const blocks = text.split(/\n(?=Host )/);
  const block = blocks.find((b) => b.startsWith(`Host ${alias}\n`));
  assert.ok(block, `no Host ${alias}`);
  return new Map(
    block
      .split("\n")
      .slice(1)
      .filter((l) => l.trim())
      .map((l) => {
        const [k, ...v] = l.trim().split(/\s+/);
        return [(k ?? "").toLowerCase(), v.join(" ")];
      }),
  );
}

describe("ssh_config renderer", () => {
  it("gives each builder an alias with address, port, user, key and strict pinned checking", () => {
    const text = renderSshConfig(
      [builder({ user: "nix", port: 2222, identityFile: "/root/.ssh/id" }), builder({ name: "b2" })],
      { knownHostsFile: "/etc/nix/nixpool-known_hosts" },
    );
    const b1 = hostBlock(text, "nixpool-b1");
    assert.equal(b1.get("hostname"), "10.0.0.1");
    assert.equal(b1.get("port"), "2222");
    assert.equal(b1.get("user"), "nix");
    assert.equal(b1.get("identityfile"), "/root/.ssh/id");
    assert.equal(b1.get("identitiesonly"), "yes");
    assert.equal(b1.get("hostkeyalias"), "nixpool-b1");
    assert.equal(b1.get("userknownhostsfile"), "/etc/nix/nixpool-known_hosts");
    assert.equal(b1.get("stricthostkeychecking"), "yes");
    assert.equal(b1.get("batchmode"), "yes");
    const b2 = hostBlock(text, "nixpool-b2");
    assert.equal(b2.has("user"), false);
    assert.equal(b2.has("identityfile"), false);
    assert.equal(b2.get("port"), "22");
  });

  it("never trusts on first use", () => {
    const text = renderSshConfig([builder({ hostKey: undefined })], { knownHostsFile: "/k" });
    assert.doesNotMatch(text, /StrictHostKeyChecking\s+(no|accept-new|ask)/i);
  });

  it("quotes a known_hosts path with spaces", () => {
    const text = renderSshConfig([builder()], { knownHostsFile: "/tmp/my dir/kh" });
    assert.match(text, /UserKnownHostsFile "\/tmp\/my dir\/kh"/);
  });
});

describe("known_hosts renderer", () => {
  it("pins each key under the alias, without the comment, skipping builders without a key", () => {
    const text = renderKnownHosts([
      builder({ hostKey: `${KEY} root@b1` }),
      builder({ name: "b2", hostKey: undefined }),
    ]);
    const lines = text.split("\n").filter((l) => l && !l.startsWith("#"));
    assert.deepEqual(lines, [`nixpool-b1 ${KEY}`]);
  });
});
