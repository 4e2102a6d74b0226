import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parse } from "smol-toml";
import { parseInventory } from "../../src/config/inventory-parse.js";
import { normaliseBuilders } from "../../src/config/schema.js";
import type { Builder } from "../../src/core/builder.js";
import { SAMPLE_KEY, sampleBuilder } from "../helpers/builders.js";
import {
  renderBuilderTable,
  renderInventoryToml,
  toInventoryEntry,
} from "../../src/core/inventory-render.js";

const KEY = SAMPLE_KEY;

const builder = (over: Partial<Builder> = {}): Builder => sampleBuilder(over);

describe("inventory renderer", () => {
  it("leaves defaults out, keeps protocol explicit", () => {
    assert.deepEqual(toInventoryEntry(builder(), "x86_64-linux"), { host: "10.0.0.1", protocol: "ssh-ng" });
    assert.deepEqual(toInventoryEntry(builder()).systems, ["x86_64-linux"]);
  });

  it("round-trips every field through nixpool.toml and the schema", () => {
    const full = [
      builder({
        name: "b.full",
        host: "builder.example.com",
        port: 2222,
        user: "nix",
        protocol: "ssh",
        systems: ["x86_64-linux", "i686-linux"],
        maxJobs: 8,
        speedFactor: 3,
        supportedFeatures: ["big-parallel", "kvm"],
        mandatoryFeatures: ["kvm"],
        hostKey: KEY,
        identityFile: "/root/.ssh/id",
        tags: ["fast", "eu"],
        trust: "untrusted",
      }),
      builder({ name: "plain" }),
    ];
    const toml = renderInventoryToml(
      full.map((b) => ({ name: b.name, entry: toInventoryEntry(b, "x86_64-linux") })),
      ["header line"],
    );
    assert.ok(toml.startsWith('# header line\n\n[builders."b.full"]\n'));
    assert.deepEqual(normaliseBuilders(parseInventory(toml, "t.toml"), "x86_64-linux"), full);
  });

  it("writes fields in a fixed, readable order with comments above the table", () => {
    const text = renderBuilderTable({
      name: "b1",
      entry: { trust: "untrusted", maxJobs: 2, host: "h", protocol: "ssh" },
      comments: ["imported from /etc/nix/machines:3"],
    });
    assert.equal(
      text,
      '# imported from /etc/nix/machines:3\n[builders.b1]\nhost = "h"\nprotocol = "ssh"\nmaxJobs = 2\ntrust = "untrusted"\n',
    );
    assert.deepEqual(JSON.parse(JSON.stringify(parse(text))), {
      builders: { b1: { host: "h", protocol: "ssh", maxJobs: 2, trust: "untrusted" } },
    });
  });

  it("refuses an invalid builder name", () => {
    assert.throws(() => renderBuilderTable({ name: "-bad", entry: { host: "h" } }), /invalid builder name/);
  });
});
