import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { Builder } from "../../src/core/builder.js";
import { unsafeBuilderField } from "../../src/core/builder.js";
import { renderKnownHosts, renderSshConfig } from "../../src/core/ssh-config.js";
import { renderMachinesFile } from "../../src/core/machines.js";
import { renderNixosModule } from "../../src/core/nixos.js";
import { serverIpv4 } from "../../src/providers/hetzner/provision.js";
import { resolveEndpoint } from "../../src/providers/hetzner/token.js";
import { renderInventoryToml } from "../../src/core/inventory-render.js";
import { SAMPLE_KEY, sampleBuilder } from "../helpers/builders.js";

const builder = (over: Partial<Builder> = {}): Builder => sampleBuilder({ hostKey: SAMPLE_KEY, ...over });
const refused = { code: "BUILDER_UNSAFE_FIELD" };
const opts = { knownHostsFile: "/tmp/known_hosts" };

describe("renderers refuse builder fields that inject directives", () => {
  it("keeps a host with a newline and ProxyCommand out of ssh_config and known_hosts", () => {
    const b = builder({ host: "203.0.113.5\n  ProxyCommand sh -c 'touch /tmp/pwned'", source: "hetzner" });
    assert.throws(() => renderSshConfig([b], opts), refused);
    assert.throws(() => renderKnownHosts([b]), refused);
    assert.throws(() => renderNixosModule([builder({ host: "h\nProxyCommand x", port: 2222 })]), refused);
  });

  it("refuses a host or user that starts with '-' or holds spaces", () => {
    assert.throws(() => renderSshConfig([builder({ host: "-oProxyCommand=x" })], opts), refused);
    assert.throws(() => renderSshConfig([builder({ user: "root ProxyJump evil" })], opts), refused);
  });

  it("keeps ';', '#' and spaces out of machines-file fields (each would add or cut a machine)", () => {
    for (const identityFile of ["/k;ssh://evil x86_64-linux", "/k#x", "/state dir/id", "/k\nssh://evil"]) {
      assert.throws(() => renderMachinesFile([builder({ identityFile })]), refused, identityFile);
    }
    assert.throws(() => renderMachinesFile([builder({ systems: ["x86_64-linux;ssh://evil"] })]), refused);
    assert.throws(() => renderMachinesFile([builder({ supportedFeatures: ["kvm evil"] })]), refused);
  });

  it("refuses a host key with a second line", () => {
    const hostKey = `${SAMPLE_KEY}\n@cert-authority * ssh-ed25519 AAAAEVIL`;
    assert.throws(() => renderKnownHosts([builder({ hostKey })]), refused);
  });

  it("refuses an ssh_config path with a newline or a quote", () => {
    assert.throws(() => renderSshConfig([builder()], { knownHostsFile: "/tmp/k\nProxyCommand x" }), {
      code: "SSH_CONFIG_UNSAFE_VALUE",
    });
    assert.throws(() => renderSshConfig([builder({ identityFile: '/k" ProxyCommand "x' })], opts), refused);
  });

  it("accepts ordinary builders: names, IPv4/IPv6/DNS hosts, paths, keys", () => {
    for (const host of ["10.0.0.1", "builder.example.org", "::1", "[2001:db8::1]", "b_1"]) {
      assert.equal(unsafeBuilderField(builder({ host })), undefined, host);
    }
    const b = builder({ user: "nix-user", identityFile: "/var/lib/nixpool/local/id_ed25519" });
    assert.equal(unsafeBuilderField(b), undefined);
    assert.match(
      renderMachinesFile([b]),
      /^ssh-ng:\/\/nixpool-b1 x86_64-linux \/var\/lib\/nixpool\/local\/id_ed25519 1 1 /m,
    );
  });
});

describe("Hetzner server addresses", () => {
  const server = (ip: string | null) => ({
    name: "nixpool-x",
    public_net: { ipv4: ip === null ? null : { ip, blocked: false, dns_ptr: "" } },
  });

  it("refuses an IPv4 field that is not an address (it would go into ssh_config)", () => {
    for (const ip of [
      "203.0.113.5\n  ProxyCommand touch /tmp/pwned",
      "203.0.113.5 evil",
      "evil.example",
      "",
    ]) {
      assert.throws(() => serverIpv4(server(ip) as never), { code: "HCLOUD_BAD_RESPONSE" }, ip);
    }
  });

  it("returns a real address, and null when the server has none", () => {
    assert.equal(serverIpv4(server("203.0.113.5") as never), "203.0.113.5");
    assert.equal(serverIpv4(server(null) as never), null);
  });
});

describe("HCLOUD_ENDPOINT", () => {
  it("refuses plain http to another machine: the token and host keys would travel in clear text", () => {
    for (const e of [
      "http://203.0.113.5/v1",
      "http://api.example.org/v1",
      "ftp://127.0.0.1/v1",
      "not a url",
    ]) {
      assert.throws(() => resolveEndpoint({ HCLOUD_ENDPOINT: e }), /HCLOUD_ENDPOINT/, e);
    }
  });

  it("accepts https, http on loopback (the emulator), and http when explicitly allowed", () => {
    assert.equal(resolveEndpoint({}), "https://api.hetzner.cloud/v1");
    for (const e of [
      "https://api.example.org/v1",
      "http://127.0.0.1:8080/v1",
      "http://localhost:1/v1",
      "http://[::1]:9/v1",
    ]) {
      assert.equal(resolveEndpoint({ HCLOUD_ENDPOINT: e }), e);
    }
    const insecure = { HCLOUD_ENDPOINT: "http://10.0.0.2:8080/v1", NIXPOOL_HCLOUD_INSECURE_HTTP: "1" };
    assert.equal(resolveEndpoint(insecure), insecure.HCLOUD_ENDPOINT);
  });
});

describe("writers of several files", () => {
  it("known_hosts, rendered first, refuses a bad builder even without a host key", () => {
    assert.throws(
      () => renderKnownHosts([builder({ hostKey: undefined, host: "h\nProxyCommand x" })]),
      refused,
    );
  });
});

describe("nixpool.toml header", () => {
  it("keeps a file name with a newline inside the comment (it must not add a builder table)", () => {
    const toml = renderInventoryToml([], ['Imported from /tmp/x\n[builders.evil]\nhost = "203.0.113.9"']);
    assert.equal(toml.split("\n").filter((l) => l !== "" && !l.startsWith("#")).length, 0, toml);
  });
});
