import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { parseMachinesFile } from "../../src/core/machines-parse.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { formatAsNix, nixParseMachines } from "../helpers/nix-machines.js";
import { SAMPLE_KEY as KEY } from "../helpers/builders.js";

const INVENTORY = `
[defaults]
system = "x86_64-linux"

[builders.big]
host = "big.example.com"
user = "nix"
protocol = "ssh-ng"
systems = ["x86_64-linux", "i686-linux"]
maxJobs = 16
speedFactor = 4
supportedFeatures = ["big-parallel", "kvm", "nixos-test"]
mandatoryFeatures = ["big-parallel"]
hostKey = "${KEY} root@big"
identityFile = "/root/.ssh/id_big"

[builders."arm.2"]
host = "10.0.0.2"
port = 2222
protocol = "ssh"
systems = ["aarch64-linux"]
hostKey = "${KEY}"

[builders.nokey]
host = "nokey.example.com"
`;

describe("config renderers, accepted by the real Nix and OpenSSH", () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  let inventory: string;
  const cli = (args: string[]) => runCli(join(tmp.dir, "state"), ["--inventory", inventory, ...args]);
  before(async () => {
    tmp = await makeTempDir("nixpool-config-");
    inventory = join(tmp.dir, "nixpool.toml");
    await writeFile(inventory, INVENTORY);
  });
  after(async () => {
    await tmp.cleanup();
  });

  it("config nixos: nix-instantiate --eval --strict accepts it and sees every field", async () => {
    const r = await cli(["config", "nixos"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const file = join(tmp.dir, "builders.nix");
    await writeFile(file, r.stdout);
    const ev = await run(["nix-instantiate", "--eval", "--strict", "--json", file]);
    const v = JSON.parse(ev.stdout) as {
      nix: {
        distributedBuilds: boolean;
        buildMachines: Record<string, unknown>[];
        settings: Record<string, unknown>;
      };
      programs: {
        ssh: { knownHosts: Record<string, { hostNames: string[]; publicKey: string }>; extraConfig: string };
      };
    };
    assert.equal(v.nix.distributedBuilds, true);
    assert.equal(v.nix.settings["builders-use-substitutes"], true);
    assert.deepEqual(v.nix.buildMachines, [
      {
        hostName: "big.example.com",
        sshUser: "nix",
        sshKey: "/root/.ssh/id_big",
        protocol: "ssh-ng",
        systems: ["x86_64-linux", "i686-linux"],
        maxJobs: 16,
        speedFactor: 4,
        supportedFeatures: ["big-parallel", "kvm", "nixos-test"],
        mandatoryFeatures: ["big-parallel"],
        publicHostKey: Buffer.from(KEY).toString("base64"),
      },
      {
        hostName: "nixpool-arm.2",
        protocol: "ssh",
        systems: ["aarch64-linux"],
        maxJobs: 1,
        speedFactor: 1,
        supportedFeatures: [],
        mandatoryFeatures: [],
        publicHostKey: Buffer.from(KEY).toString("base64"),
      },
      {
        hostName: "nokey.example.com",
        protocol: "ssh",
        systems: ["x86_64-linux"],
        maxJobs: 1,
        speedFactor: 1,
        supportedFeatures: [],
        mandatoryFeatures: [],
      },
    ]);
    assert.deepEqual(v.programs.ssh.knownHosts, {
      "nixpool-big": { hostNames: ["big.example.com"], publicKey: KEY },
      "nixpool-arm.2": { hostNames: ["nixpool-arm.2"], publicKey: KEY },
    });
    assert.equal(
      v.programs.ssh.extraConfig,
      "Host nixpool-arm.2\n  HostName 10.0.0.2\n  Port 2222\n  HostKeyAlias nixpool-arm.2\n",
    );
  });

  for (const style of [[], ["--direct"]]) {
    it(`config machines ${style.join(" ")}: Nix parses every builder as declared`, async () => {
      const r = await cli(["config", "machines", ...style]);
      assert.equal(r.exitCode, 0, r.stderr);
      const file = join(tmp.dir, `machines${style.join("")}`);
      await writeFile(file, r.stdout);
      const nix = await nixParseMachines(file);
      assert.ok(nix.ok);
      // Through the aliases only pinned builders are usable: "nokey" is left out, with a warning.
      assert.deepEqual(nix.machines, [
        "(x86_64-linux, i686-linux, 16, big-parallel, kvm, nixos-test, big-parallel)",
        "(aarch64-linux, 1, , )",
        ...(style.length ? ["(x86_64-linux, 1, , )"] : []),
      ]);
      if (style.length) assert.equal(r.stderr, "");
      else assert.match(r.stderr, /builder nokey has no pinned host key and is left out/);
      const ours = await parseMachinesFile(file, r.stdout, {
        read: () => Promise.resolve({ kind: "missing" }),
      });
      assert.deepEqual(ours.diagnostics, []);
      assert.deepEqual(
        ours.machines.map((m) => formatAsNix(m, "x86_64-linux")),
        nix.machines,
      );
      assert.deepEqual(
        ours.machines.map((m) => m.storeUri),
        style.length
          ? ["ssh-ng://nix@big.example.com", "ssh://nixpool-arm.2", "ssh://nokey.example.com"]
          : ["ssh-ng://nixpool-big", "ssh://nixpool-arm.2"],
      );
      assert.equal(ours.machines[0]?.hostKey, KEY);
    });
  }

  it("config nix-conf: Nix reads the fragment", async () => {
    const r = await cli(["config", "nix-conf", "--machines-file", "/srv/nixpool/machines"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const confDir = join(tmp.dir, "etc-nix");
    await mkdir(confDir, { recursive: true });
    await writeFile(join(confDir, "nix.conf"), r.stdout);
    const show = await run(["nix", "--extra-experimental-features", "nix-command", "show-config"], {
      env: { NIX_CONF_DIR: confDir },
    });
    assert.match(show.stdout, /^builders = @\/srv\/nixpool\/machines$/m);
    assert.match(show.stdout, /^builders-use-substitutes = true$/m);
  });

  it("config ssh and known-hosts: ssh and ssh-keygen read them as meant", async () => {
    const kh = join(tmp.dir, "known_hosts");
    const ssh = await cli(["config", "ssh", "--known-hosts-file", kh]);
    const known = await cli(["config", "known-hosts"]);
    assert.equal(ssh.exitCode, 0, ssh.stderr);
    await writeFile(join(tmp.dir, "ssh_config"), ssh.stdout);
    await writeFile(kh, known.stdout);
    const g = await run(["ssh", "-G", "-F", join(tmp.dir, "ssh_config"), "nixpool-arm.2"]);
    const opt = (k: string) => new RegExp(`^${k} (.*)$`, "m").exec(g.stdout)?.[1];
    assert.equal(opt("hostname"), "10.0.0.2");
    assert.equal(opt("port"), "2222");
    assert.equal(opt("stricthostkeychecking"), "true");
    assert.equal(opt("hostkeyalias"), "nixpool-arm.2");
    assert.equal(opt("userknownhostsfile"), kh);
    const big = await run(["ssh", "-G", "-F", join(tmp.dir, "ssh_config"), "nixpool-big"]);
    assert.match(big.stdout, /^user nix$/m);
    assert.match(big.stdout, /^identityfile \/root\/\.ssh\/id_big$/m);
    for (const alias of ["nixpool-big", "nixpool-arm.2"]) {
      const f = await run(["ssh-keygen", "-F", alias, "-f", kh]);
      assert.match(f.stdout, new RegExp(`^${alias.replace(".", "\\.")} ssh-ed25519 `, "m"));
    }
    const none = await run(["ssh-keygen", "-F", "nixpool-nokey", "-f", kh], { reject: false });
    assert.notEqual(none.exitCode, 0);
  });

  it("an invalid inventory: exit 2 naming the field, nothing printed on stdout", async () => {
    const bad = join(tmp.dir, "bad.toml");
    await writeFile(bad, '[builders.b1]\nhost = "h"\nmaxJobs = 0\n');
    const r = await runCli(join(tmp.dir, "state"), ["--inventory", bad, "config", "machines"]);
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /builders\.b1\.maxJobs: must be ≥ 1/);
    assert.equal(r.stdout, "");
  });
});
