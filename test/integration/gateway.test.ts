import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { encodeClientHello, encodeRequest, WireWriter } from "../../src/core/nix-serve/index.js";
import { CLI, makeTempDir } from "../helpers/cli.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { socketRequest, startServe, type ServeProcess } from "../helpers/serve-process.js";
import {
  startClientMachine,
  startGatewaySshd,
  type ClientMachine,
  type GatewaySshd,
} from "../helpers/gateway.js";

// A client machine (its own network namespace and store) uses the whole pool as one builder:
// its Nix's build hook speaks to `nixpool gateway` through a real sshd, configured only from
// `nixpool config client`'s output.

const FIXTURE = resolve(import.meta.dirname, "../fixtures/dispatch.nix");

interface ApiBuild {
  id: string;
  client: string;
  status: string;
  label: string;
}

describe(
  "the gateway: a client machine's Nix uses the pool as one builder",
  { timeout: 900_000, concurrency: false },
  () => {
    let pool: TestPool;
    let serve: ServeProcess;
    let tmp: { dir: string; cleanup: () => Promise<void> };
    let client: ClientMachine;
    let sshd: GatewaySshd;
    const gatewayCommand = (name: string) =>
      `/usr/bin/node ${CLI} --state-dir ${pool.stateDir} gateway --client ${name}`;

    before(async () => {
      pool = await startTestPool(2, 2);
      serve = await startServe(pool.stateDir);
      tmp = await makeTempDir("nixpool-gateway-");
      client = await startClientMachine(join(tmp.dir, "client"), "gw-client");
      sshd = await startGatewaySshd(join(tmp.dir, "sshd"), client.rec.hostAddress);
      await writeFile(
        sshd.authorizedKeysFile,
        `restrict,command="${gatewayCommand("alice")}" ${client.publicKey} nixpool:alice\n`,
      );
      const r = await pool.cli([
        "config",
        "client",
        "alice",
        "--host",
        client.rec.hostAddress,
        "--user",
        "root",
        "--host-key-file",
        sshd.hostKeyPubFile,
        "--identity",
        client.identity,
        "--json",
      ]);
      assert.equal(r.exitCode, 0, r.stderr);
      await client.configure(
        JSON.parse(r.stdout) as { machinesLine: string; knownHostsLine: string; nixConf: string },
      );
    });
    after(async () => {
      await serve?.stop();
      await sshd?.stop();
      await client?.stop();
      await pool?.cleanup();
      await tmp?.cleanup();
    });

    const apiBuilds = async (): Promise<ApiBuild[]> => {
      const r = await socketRequest(serve.socket, "GET", "/api/builds?limit=1000");
      return JSON.parse(r.body) as ApiBuild[];
    };

    const nixBuild = (attr: string, seed: string, extra: string[] = []) =>
      client.exec([
        "nix-build",
        FIXTURE,
        "-A",
        attr,
        "--argstr",
        "seed",
        seed,
        ...extra,
        "--max-jobs",
        "0",
        "--no-out-link",
      ]);

    test("nix-build --max-jobs 0 with the gateway as the only builder: correct outputs, every derivation built in the pool", async () => {
      const seed = randomBytes(8).toString("hex");
      const known = new Set((await apiBuilds()).map((b) => b.id));
      const r = await nixBuild("graph", seed, ["--arg", "n", "8", "--argstr", "sleep", "0.5"]);
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}\n${await sshd.log()}`);
      const out = r.stdout.trim();
      const cat = await client.exec(["cat", out]);
      assert.equal(cat.stdout, Array.from({ length: 8 }, (_, i) => `leaf-${i}\n`).join(""));
      const builds = (await apiBuilds()).filter((b) => !known.has(b.id));
      assert.equal(builds.length, 9, JSON.stringify(builds));
      for (const b of builds) {
        assert.equal(b.client, "gateway:alice");
        assert.equal(b.status, "succeeded");
      }
    });
  },
);
