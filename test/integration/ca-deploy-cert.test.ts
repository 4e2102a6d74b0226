import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { statePaths } from "../../src/config/state-paths.js";
import { startForwardedAgent } from "../../src/deploy/forwarded-agent.js";
import { runOnTarget, writeTargetKnownHosts } from "../../src/deploy/target-ssh.js";
import { startHost, stopHost } from "../../src/providers/local/host.js";
import type { HostRecord } from "../../src/providers/local/records.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { expectCode } from "../helpers/serve.js";

/** The fields of `ssh-keygen -L`: Principals, Valid, Critical Options, Extensions. */
function certFields(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  let last = "";
  for (const line of text.split("\n")) {
    const m = /^\s+([A-Z][A-Za-z ]+):\s*(.*)$/.exec(line);
    if (m) fields[(last = m[1] ?? "")] = (m[2] ?? "").trim();
    else if (last && line.trim()) fields[last] = `${fields[last] ?? ""} ${line.trim()}`.trim();
  }
  return fields;
}

describe(
  "ca sign for deploys: sudoer principals, a 10-minute window, accepted by a real sshd",
  { timeout: 300_000 },
  () => {
    let tmp: { dir: string; cleanup: () => Promise<void> };
    let state: string;
    let host: HostRecord | undefined;
    const cli = (args: string[]) => runCli(state, args);
    const key = (name: string) => join(tmp.dir, name);

    before(async () => {
      tmp = await makeTempDir("nixpool-ca-deploy-");
      state = join(tmp.dir, "state");
      for (const name of ["alice", "alice2", "alice3"])
        await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key(name)]);
      assert.equal((await cli(["ca", "init"])).exitCode, 0);
      const add = await cli([
        "access",
        "add",
        "alice",
        "--key",
        (await readFile(key("alice.pub"), "utf8")).trim(),
        "--trusted",
      ]);
      assert.equal(add.exitCode, 0, add.stderr);
      // A target whose sshd trusts nixpool's CA, and lets in as root whoever carries "sudoer".
      const principals = join(tmp.dir, "principals-root");
      await writeFile(principals, "sudoer\n", { mode: 0o644 });
      host = await startHost({
        name: "cacert",
        dir: join(tmp.dir, "host"),
        jobs: 1,
        authorizedKeys: [],
        sshdConfig: `TrustedUserCAKeys ${statePaths(state).ca.pub}\nAuthorizedPrincipalsFile ${principals}`,
      });
    });
    after(async () => {
      if (host) await stopHost(host);
      await tmp?.cleanup();
    });

    test("--principals sudoer,alice --validity 10m --for deploy: ssh-keygen -L shows exactly that", async () => {
      const before = Date.now();
      const r = await cli([
        "ca",
        "sign",
        "alice",
        "--key",
        key("alice.pub"),
        "--principals",
        "sudoer,alice",
        "--validity",
        "10m",
        "--for",
        "deploy",
        "--json",
      ]);
      const signedBy = Date.now();
      assert.equal(r.exitCode, 0, r.stderr);
      const signed = JSON.parse(r.stdout) as {
        certificate: string;
        principals: string[];
        validFrom: string;
        validTo: string;
        use: string;
      };
      assert.equal(signed.certificate, key("alice-cert.pub"));
      assert.deepEqual([signed.principals, signed.use], [["sudoer", "alice"], "deploy"]);
      const validMs = Date.parse(signed.validTo) - Date.parse(signed.validFrom);
      assert.ok(Math.abs(validMs - 15 * 60_000) < 2000, `window ${validMs} ms: 5 minutes of skew + 10`);
      // Between the CLI's start and its end, whatever the machine's load (validTo is in whole seconds).
      const validTo = Date.parse(signed.validTo);
      assert.ok(validTo >= before + 10 * 60_000 - 1000 && validTo <= signedBy + 10 * 60_000 + 1000);
      const f = certFields((await run(["ssh-keygen", "-L", "-f", signed.certificate])).stdout);
      assert.equal(f["Principals"], "sudoer alice");
      assert.match(f["Valid"] ?? "", /^from \S+ to \S+$/);
      assert.equal(f["Critical Options"], "(none)", "a deploy certificate forces no command");
      assert.equal(
        f["Extensions"],
        "permit-agent-forwarding",
        "clear: no pty, no port forwarding; the agent for pam-ussh",
      );
      assert.match(f["Key ID"] ?? "", /"nixpool:alice:\d+"/);
      // A builder certificate (the default) stays forced into the Nix protocol.
      const builderCert = await cli(["ca", "sign", "alice", "--key", key("alice3.pub"), "--validity", "10m"]);
      assert.equal(builderCert.exitCode, 0, builderCert.stderr);
      const b = certFields((await run(["ssh-keygen", "-L", "-f", key("alice3-cert.pub")])).stdout);
      assert.equal(b["Critical Options"], "force-command nix-daemon --stdio");
    });

    test("sshd with TrustedUserCAKeys lets the sudoer certificate in as root; one without the principal is refused", async () => {
      assert.ok(host);
      const knownHostsFile = await writeTargetKnownHosts(join(tmp.dir, "known_hosts"), [
        {
          name: "cacert",
          host: host.address,
          port: 22,
          user: "root",
          hostKey: host.hostKeyPub,
          identityFile: undefined,
          sudo: false,
        },
      ]);
      const target = (identityFile: string) => ({
        name: "cacert",
        host: host!.address,
        port: 22,
        user: "root",
        hostKey: host!.hostKeyPub,
        identityFile,
        sudo: false,
      });
      // ssh offers KEY-cert.pub next to KEY by itself.
      const r = await runOnTarget({ target: target(key("alice")), knownHostsFile }, ["id", "-un"]);
      assert.equal(r.stdout.trim(), "root");
      const own = await cli([
        "ca",
        "sign",
        "alice",
        "--key",
        key("alice2.pub"),
        "--principals",
        "alice",
        "--validity",
        "10m",
        "--for",
        "deploy",
      ]);
      assert.equal(own.exitCode, 0, own.stderr);
      await expectCode(
        runOnTarget({ target: target(key("alice2")), knownHostsFile }, ["id", "-un"]),
        "TARGET_AUTH_FAILED",
      );
    });

    test("a forwarded agent of nixpool's own carries the deploy certificate to the target (what pam-ussh reads for sudo)", async () => {
      assert.ok(host);
      const target = {
        name: "cacert",
        host: host.address,
        port: 22,
        user: "root",
        hostKey: host.hostKeyPub,
        identityFile: key("alice"),
        sudo: false,
      };
      const knownHostsFile = join(tmp.dir, "known_hosts");
      const agent = await startForwardedAgent(key("alice"), 60);
      try {
        const r = await runOnTarget({ target, knownHostsFile, agentSocket: agent.socket }, ["ssh-add", "-L"]);
        assert.match(
          r.stdout,
          /^ssh-ed25519-cert-v01@openssh\.com /m,
          "the certificate reaches the target's agent socket",
        );
        const without = await runOnTarget({ target, knownHostsFile }, ["ssh-add", "-L"], { reject: false });
        assert.notEqual(without.exitCode, 0, "no agent is forwarded unless asked");
      } finally {
        await agent.stop();
      }
    });
  },
);
