import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { statePaths } from "../../src/config/state-paths.js";

const SRC = resolve(import.meta.dirname, "../../src");

/** Every string leaf of a paths object (functions called with a sample argument). */
function leaves(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (typeof value === "function") return leaves((value as (a: string) => unknown)("sample"));
  if (value && typeof value === "object") return Object.values(value).flatMap(leaves);
  return [];
}

test("the state directory layout, as docs/configuration.md describes it", () => {
  const p = statePaths("/var/lib/nixpool");
  assert.equal(p.localPool.poolFile, "/var/lib/nixpool/local/pool.json");
  assert.equal(p.localPool.clientKey, "/var/lib/nixpool/local/id_ed25519");
  assert.equal(p.localPool.host("local1").record, "/var/lib/nixpool/local/hosts/local1/host.json");
  assert.equal(p.client.machines, "/var/lib/nixpool/client/machines");
  assert.equal(p.client.knownHosts, "/var/lib/nixpool/client/known_hosts");
  assert.equal(p.hetzner.ownerFile, "/var/lib/nixpool/hetzner/owner");
  assert.equal(p.hetzner.worker("l-1").record, "/var/lib/nixpool/hetzner/workers/l-1/worker.json");
  assert.equal(p.hetzner.worker("l-1").shellRc, "/var/lib/nixpool/hetzner/workers/l-1/shellrc");
  assert.equal(p.access.usersFile, "/var/lib/nixpool/users.toml");
  assert.equal(p.access.indexDir, "/var/lib/nixpool/access/index");
  assert.equal(p.ca.key, "/var/lib/nixpool/ca/ca_ed25519");
  assert.equal(p.emulator.hetznerDir, "/var/lib/nixpool/emulator/hetzner");
  assert.equal(p.logs.derivationLog("/nix/store/abc-x.drv"), "/var/lib/nixpool/logs/abc-x.log");
  assert.equal(p.dispatch.durationsFile, "/var/lib/nixpool/dispatch/durations.json");
  assert.equal(p.serve.historyDb, "/var/lib/nixpool/serve/history.sqlite");
  assert.equal(p.serve.tokenFile, "/var/lib/nixpool/serve/token");
  assert.equal(p.serve.socket, "/var/lib/nixpool/serve/api.sock");
});

test("every path lies inside the state directory, and no two concepts share a path", () => {
  const all = leaves(statePaths("/s"));
  for (const path of all) assert.ok(path === "/s" || path.startsWith("/s/"), path);
  const files = all.filter((p) => /\.[a-z]+$/.test(p));
  assert.equal(new Set(files).size, files.length, `duplicates among ${files.join(", ")}`);
});

test("no other source file spells out a state file name: one module owns the layout", async () => {
  const names = [
    "pool.json",
    "host.json",
    "worker.json",
    "users.toml",
    "github-keys.json",
    "static-files.json",
  ];
  const more = ["issued.jsonl", "revoked.json", "durations.json", "shellrc", "sshd_config", "ca_ed25519"];
  const offenders: string[] = [];
  for (const entry of await readdir(SRC, { recursive: true })) {
    const file = join(SRC, entry);
    if (!file.endsWith(".ts") || file.endsWith("state-paths.ts") || file.includes("/generated/")) continue;
    const text = await readFile(file, "utf8");
    for (const name of [...names, ...more]) {
      if (text.includes(`"${name}"`) || text.includes(`/${name}"`))
        offenders.push(`${relative(SRC, file)}: ${name}`);
    }
  }
  assert.deepEqual(offenders, []);
});
