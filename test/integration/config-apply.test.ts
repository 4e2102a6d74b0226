import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { run } from "../../src/adapters/runner.js";
import { SYSTEM_PATHS } from "../../src/core/nix-conf.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import { SAMPLE_KEY as KEY } from "../helpers/builders.js";

interface ApplyJson {
  root: string;
  dryRun: boolean;
  files: { role: string; path: string; written: string; status: string; backup: string | null }[];
  warnings: string[];
}

/** Every file under dir, relative, sorted. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name), `${rel}${e.name}/`);
      else out.push(`${rel}${e.name}`);
    }
  };
  if (existsSync(dir)) await walk(dir, "");
  return out.sort();
}

describe("nixpool config apply --root", () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    tmp = await makeTempDir("nixpool-apply-");
  });
  after(async () => {
    await tmp.cleanup();
  });

  async function setup(name: string) {
    const dir = join(tmp.dir, name);
    const root = join(dir, "root");
    const inventory = join(dir, "nixpool.toml");
    await mkdir(join(root, "etc/nix"), { recursive: true });
    await mkdir(join(root, "etc/ssh"), { recursive: true });
    await writeFile(join(root, "etc/nix/nix.conf"), "sandbox = false\nsubstituters =\n", { mode: 0o640 });
    await writeFile(join(root, "etc/ssh/ssh_config"), "Include /etc/ssh/ssh_config.d/*.conf\nHost *\n");
    await writeFile(
      inventory,
      `[builders.b1]\nhost = "10.9.9.1"\nuser = "root"\nmaxJobs = 2\nhostKey = "${KEY}"\nidentityFile = "/root/.ssh/id_b1"\n`,
    );
    const cli = (args: string[]) => runCli(join(dir, "state"), ["--inventory", inventory, ...args]);
    return { dir, root, inventory, cli };
  }

  it("writes every file with the right content; a second run changes nothing", async () => {
    const { root, cli } = await setup("basic");
    const first = await cli(["config", "apply", "--root", root, "--json"]);
    assert.equal(first.exitCode, 0, first.stderr);
    const report = JSON.parse(first.stdout) as ApplyJson;
    assert.deepEqual(
      report.files.map((f) => [f.path, f.status]),
      [
        [SYSTEM_PATHS.knownHosts, "created"],
        [SYSTEM_PATHS.sshConfig, "created"],
        [SYSTEM_PATHS.machines, "created"],
        [SYSTEM_PATHS.nixConfFragment, "created"],
        [SYSTEM_PATHS.nixConf, "changed"],
      ],
    );
    const read = (p: string) => readFile(join(root, p), "utf8");
    assert.equal(await read(SYSTEM_PATHS.machines), (await cli(["config", "machines"])).stdout);
    assert.equal(await read(SYSTEM_PATHS.knownHosts), (await cli(["config", "known-hosts"])).stdout);
    assert.equal(await read(SYSTEM_PATHS.sshConfig), (await cli(["config", "ssh"])).stdout);
    assert.equal(await read(SYSTEM_PATHS.nixConfFragment), (await cli(["config", "nix-conf"])).stdout);
    assert.match(await read(SYSTEM_PATHS.sshConfig), /UserKnownHostsFile \/etc\/nix\/nixpool-known_hosts\n/);
    const conf = await read(SYSTEM_PATHS.nixConf);
    assert.ok(conf.startsWith("sandbox = false\nsubstituters =\n"), conf);
    assert.match(conf, /\n# BEGIN nixpool[^\n]*\n!include nixpool\.conf\n# END nixpool\n$/);
    assert.equal(
      (await stat(join(root, SYSTEM_PATHS.nixConf))).mode & 0o777,
      0o640,
      "nix.conf keeps its mode",
    );
    assert.equal(
      report.files.find((f) => f.role === "nix-conf")?.backup,
      `${join(root, SYSTEM_PATHS.nixConf)}.nixpool-backup`,
    );
    assert.equal(await read(`${SYSTEM_PATHS.nixConf}.nixpool-backup`), "sandbox = false\nsubstituters =\n");

    // Nix itself reads the applied nix.conf and follows the !include.
    const show = await run(["nix", "--extra-experimental-features", "nix-command", "show-config"], {
      env: { NIX_CONF_DIR: join(root, "etc/nix") },
    });
    assert.match(show.stdout, /^builders = @\/etc\/nix\/machines$/m);
    assert.match(show.stdout, /^builders-use-substitutes = true$/m);

    const before = await listFiles(root);
    const second = await cli(["config", "apply", "--root", root, "--json"]);
    assert.equal(second.exitCode, 0, second.stderr);
    assert.deepEqual(
      (JSON.parse(second.stdout) as ApplyJson).files.map((f) => f.status),
      ["unchanged", "unchanged", "unchanged", "unchanged", "unchanged"],
    );
    assert.deepEqual(await listFiles(root), before);
    const text = await cli(["config", "apply", "--root", root]);
    assert.match(text.stdout, /machines\s+unchanged/);
  });

  it("rewrites only what changed and keeps the previous version as a backup", async () => {
    const { root, inventory, cli } = await setup("change");
    assert.equal((await cli(["config", "apply", "--root", root])).exitCode, 0);
    const oldMachines = await readFile(join(root, SYSTEM_PATHS.machines), "utf8");
    await writeFile(inventory, (await readFile(inventory, "utf8")).replace("maxJobs = 2", "maxJobs = 6"));

    const dry = await cli(["config", "apply", "--root", root, "--dry-run", "--json"]);
    assert.equal(dry.exitCode, 0, dry.stderr);
    const dryReport = JSON.parse(dry.stdout) as ApplyJson;
    assert.equal(dryReport.files.find((f) => f.role === "machines")?.status, "changed");
    assert.equal(
      await readFile(join(root, SYSTEM_PATHS.machines), "utf8"),
      oldMachines,
      "dry run writes nothing",
    );

    const r = await cli(["config", "apply", "--root", root, "--json"]);
    const report = JSON.parse(r.stdout) as ApplyJson;
    assert.deepEqual(
      report.files.filter((f) => f.status !== "unchanged").map((f) => f.role),
      ["machines"],
    );
    assert.match(
      await readFile(join(root, SYSTEM_PATHS.machines), "utf8"),
      / x86_64-linux \/root\/\.ssh\/id_b1 6 /,
    );
    assert.equal(await readFile(join(root, `${SYSTEM_PATHS.machines}.nixpool-backup`), "utf8"), oldMachines);
  });

  it("writes nothing and exits 2 naming the field when the inventory is invalid", async () => {
    const { root, inventory, cli } = await setup("invalid");
    await writeFile(inventory, '[builders.b1]\nhost = "h"\nspeedFactor = 1.5\n');
    const before = await listFiles(root);
    const r = await cli(["config", "apply", "--root", root]);
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /builders\.b1\.speedFactor: must be an integer/);
    assert.deepEqual(await listFiles(root), before);
  });

  it("refuses to replace a machines file it did not write, unless --force", async () => {
    const { root, cli } = await setup("foreign");
    const theirs = "# hand-written\nbuilder.example.org x86_64-linux - 4\n";
    await writeFile(join(root, SYSTEM_PATHS.machines), theirs);
    const r = await cli(["config", "apply", "--root", root]);
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /holds builders nixpool did not write/);
    assert.match(r.stderr, /nixpool import .*--merge/);
    assert.equal(await readFile(join(root, SYSTEM_PATHS.machines), "utf8"), theirs);
    assert.equal(existsSync(join(root, SYSTEM_PATHS.sshConfig)), false);
    const forced = await cli(["config", "apply", "--root", root, "--force"]);
    assert.equal(forced.exitCode, 0, forced.stderr);
    assert.equal(await readFile(join(root, `${SYSTEM_PATHS.machines}.nixpool-backup`), "utf8"), theirs);
  });

  it("warns when ssh_config does not include the drop-in directory or a key is not pinned", async () => {
    const { root, inventory, cli } = await setup("warnings");
    await writeFile(join(root, "etc/ssh/ssh_config"), "Host *\n  SendEnv LANG\n");
    await writeFile(inventory, '[builders.b1]\nhost = "h"\n');
    const r = await cli(["config", "apply", "--root", root]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /does not include \/etc\/ssh\/ssh_config\.d\/\*\.conf/);
    assert.match(r.stderr, /builder b1 has no pinned host key/);
    const confPath = join(root, SYSTEM_PATHS.nixConf);
    await writeFile(confPath, `${await readFile(confPath, "utf8")}builders = @/elsewhere\n`);
    const again = await cli(["config", "apply", "--root", root]);
    assert.equal(again.exitCode, 0, again.stderr);
    assert.match(again.stderr, /sets builders after nixpool's block/);
    assert.match(again.stdout, /nix\.conf\s+unchanged/);
  });
});

describe("config apply, used by the real Nix as root (local pool)", () => {
  let pool: TestPool | undefined;
  let tmp: { dir: string; cleanup: () => Promise<void> } | undefined;
  before(async () => {
    pool = await startTestPool(1, 1);
    tmp = await makeTempDir("nixpool-apply-e2e-");
  });
  after(async () => {
    await pool?.cleanup();
    await tmp?.cleanup();
  });

  it("a build with --max-jobs 0 and no --builders goes to the pool through the applied files", async () => {
    assert.ok(pool && tmp);
    const root = join(tmp.dir, "root");
    await mkdir(join(root, "etc/nix"), { recursive: true });
    await writeFile(join(root, "etc/nix/nix.conf"), "sandbox = false\nsubstituters =\n");
    // Uses the real /etc/ssh/ssh_config, which must include ssh_config.d (Debian's does).
    // No inventory at all (an empty cwd and config directory): the pool's builders alone.
    const ok = await runCli(pool.stateDir, ["config", "apply", "--root", root], {
      cwd: tmp.dir,
      env: { XDG_CONFIG_HOME: join(tmp.dir, "cfg") },
    });
    assert.equal(ok.exitCode, 0, ok.stderr);
    assert.match(await readFile(join(root, SYSTEM_PATHS.machines), "utf8"), /^ssh-ng:\/\/nixpool-local1 /m);

    const nonce = randomBytes(8).toString("hex");
    const expr = `derivation { name = "apply-e2e"; system = "${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux"; builder = "/bin/sh"; args = [ "-c" "echo ${nonce} > $out" ]; }`;
    const r = await run(
      [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$1" /etc/nix && mount --bind "$2" /etc/ssh/ssh_config.d && shift 2 && exec "$@"',
        "sh",
        join(root, "etc/nix"),
        join(root, "etc/ssh/ssh_config.d"),
        "nix-build",
        "-E",
        expr,
        "--no-out-link",
        "--max-jobs",
        "0",
      ],
      { reject: false, timeout: 120_000, env: { HOME: tmp.dir } },
    );
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /building '\/nix\/store\/[^']+-apply-e2e\.drv' on 'ssh-ng:\/\/nixpool-local1'/);
    const out = r.stdout.trim();
    assert.equal((await readFile(out, "utf8")).trim(), nonce);
  });

  it("import does not take a name the local pool uses", async () => {
    assert.ok(pool && tmp);
    const machines = join(tmp.dir, "machines");
    await writeFile(machines, "local1.example.com\n");
    const inventory = join(tmp.dir, "imported.toml");
    const r = await runCli(pool.stateDir, ["import", machines, "--inventory", inventory]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(await readFile(inventory, "utf8"), /\[builders\.local1-2\]/);
    const list = await runCli(pool.stateDir, ["--inventory", inventory, "builders", "--json"]);
    assert.equal(list.exitCode, 0, list.stderr);
  });
});
