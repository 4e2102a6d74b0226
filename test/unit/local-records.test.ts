import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readHostRecord, readPool, type HostRecord, type Pool } from "../../src/providers/local/records.js";
import { readRecords } from "../../src/providers/hetzner/records.js";

const host: HostRecord = {
  name: "local1",
  dir: "/s/local/hosts/local1",
  slot: 3,
  netns: "nixpool-3",
  address: "10.93.0.14",
  hostAddress: "10.93.0.13",
  hostKeyPub: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGpKe4R0cX3vyMgOG8d0dF9c2bYf5tT6KgO3iF6ZgE4",
  sshdPid: 4242,
  storeDir: "/s/local/hosts/local1/store",
  nixConfPath: "/s/local/hosts/local1/nix.conf",
  sshdConfigPath: "/s/local/hosts/local1/sshd_config",
  sshdLogPath: "/s/local/hosts/local1/sshd.log",
  authorizedKeysPath: "/s/local/hosts/local1/authorized_keys",
};
const pool: Pool = {
  jobs: 2,
  createdAt: "2026-11-30T12:00:00.000Z",
  clientKeyPath: "/s/local/id_ed25519",
  hosts: [host],
};

async function withState(fn: (dir: string) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), "nixpool-records-"));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("pool.json: absent is no pool; a valid record reads back as written", () =>
  withState(async (dir) => {
    assert.equal(await readPool(dir), undefined);
    await mkdir(join(dir, "local"));
    await writeFile(join(dir, "local", "pool.json"), JSON.stringify(pool));
    assert.deepEqual(await readPool(dir), pool);
  }));

test("pool.json and host.json that nixpool did not write are refused, naming the file and the field", () =>
  withState(async (dir) => {
    await mkdir(join(dir, "local", "hosts", "local1"), { recursive: true });
    const poolFile = join(dir, "local", "pool.json");
    for (const [text, field] of [
      ["{not json", /pool\.json is not valid/],
      [JSON.stringify({ ...pool, jobs: "2" }), /jobs/],
      [
        JSON.stringify({ ...pool, hosts: [{ ...host, address: "10.93.0.14\nProxyCommand x" }] }),
        /hosts\.0\.address/,
      ],
    ] as const) {
      await writeFile(poolFile, text);
      await assert.rejects(readPool(dir), (e: Error & { code?: string }) => {
        assert.equal(e.code, "STATE_RECORD_INVALID");
        assert.match(e.message, field);
        assert.ok(e.message.includes(poolFile), e.message);
        return true;
      });
    }
    const hostDir = join(dir, "local", "hosts", "local1");
    await writeFile(join(hostDir, "host.json"), JSON.stringify({ ...host, sshdPid: "4242" }));
    await assert.rejects(readHostRecord(hostDir), { code: "STATE_RECORD_INVALID" });
    await writeFile(join(hostDir, "host.json"), JSON.stringify(host));
    assert.deepEqual(await readHostRecord(hostDir), host);
  }));

test("only a missing file means 'no record': any other read error is reported", () =>
  withState(async (dir) => {
    // A directory where the file should be: EISDIR, which must not read as "no pool".
    await mkdir(join(dir, "local", "pool.json"), { recursive: true });
    await assert.rejects(readPool(dir), { code: "EISDIR" });
    await mkdir(join(dir, "hetzner", "workers", "0123456789", "worker.json"), { recursive: true });
    await assert.rejects(readRecords(dir), { code: "EISDIR" });
  }));
