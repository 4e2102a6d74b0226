import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { localSystem } from "../../src/config/load.js";
import { planImport } from "../../src/core/machines-import-plan.js";
import { parseMachinesFile, type IncludeRead } from "../../src/core/machines-parse.js";
import { makeTempDir, runCli } from "../helpers/cli.js";
import { MACHINES_CORPUS } from "../helpers/machines-corpus.js";
import { formatAsNix, nixParseMachines } from "../helpers/nix-machines.js";

const SYSTEM = localSystem();

async function readForParser(path: string): Promise<IncludeRead> {
  try {
    return { kind: "text", text: await readFile(path, "utf8") };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "";
    return code === "ENOENT" ? { kind: "missing" } : { kind: "error", message: code };
  }
}

describe("nixpool import, checked against Nix 2.8 itself", { concurrency: 4 }, () => {
  let tmp: { dir: string; cleanup: () => Promise<void> };
  before(async () => {
    tmp = await makeTempDir("nixpool-import-");
  });
  after(async () => {
    await tmp.cleanup();
  });

  MACHINES_CORPUS.forEach((c, i) => {
    it(`round trip: ${c.name}`, async () => {
      const dir = join(tmp.dir, `case${i}`);
      const sub = (s: string) => s.replaceAll("${DIR}", dir);
      for (const [rel, text] of Object.entries(c.files ?? {})) {
        await mkdir(dirname(join(dir, rel)), { recursive: true });
        await writeFile(join(dir, rel), sub(text));
      }
      await mkdir(dir, { recursive: true });
      const machines = join(dir, "machines");
      await writeFile(machines, sub(c.text));
      const inventory = join(dir, "nixpool.toml");
      const state = join(dir, "state");

      const imported = await runCli(state, ["import", machines, "--inventory", inventory]);
      const parsed = await parseMachinesFile(machines, sub(c.text), { read: readForParser });
      const plan = planImport(parsed);
      assert.equal(imported.exitCode, plan.skipped.length ? 3 : 0, imported.stderr);
      for (const s of plan.skipped) {
        assert.ok(imported.stderr.includes(`${s.at.file}:${s.at.line}: unsupported:`), imported.stderr);
      }

      const rendered = await runCli(state, ["--inventory", inventory, "config", "machines", "--direct"]);
      assert.equal(rendered.exitCode, 0, rendered.stderr);
      const renderedPath = join(dir, "rendered");
      await writeFile(renderedPath, rendered.stdout);

      const nixOriginal = await nixParseMachines(machines);
      const nixRendered = await nixParseMachines(renderedPath);
      assert.ok(nixOriginal.ok && nixRendered.ok);
      // Our parser reads the original exactly as Nix does…
      assert.deepEqual(
        nixOriginal.machines,
        parsed.machines.map((m) => formatAsNix(m, SYSTEM)),
      );
      // …and Nix reads the rendered file as the imported machines of the original.
      const keptIndices = plan.builders.map((b) => parsed.machines.indexOf(b.machine));
      const renderedParsed = await parseMachinesFile(renderedPath, rendered.stdout, { read: readForParser });
      assert.deepEqual(
        nixRendered.machines,
        renderedParsed.machines.map((m) => formatAsNix(m, SYSTEM)),
      );
      assert.equal(nixRendered.machines.length, keptIndices.length);
      // Mandatory features are listed as supported too in nixpool.toml, so compare what Nix
      // matches derivations against: systems, maxJobs, supported ∪ mandatory, mandatory.
      const meaning = (m: (typeof parsed.machines)[number]) => ({
        uri: m.storeUri,
        systems: m.systems ?? [SYSTEM],
        maxJobs: m.maxJobs,
        speed: Math.max(1, m.speedFactor),
        features: [...new Set([...m.supportedFeatures, ...m.mandatoryFeatures])].sort(),
        mandatory: m.mandatoryFeatures,
        key: m.sshKey ?? "",
        hostKey: (m.hostKey ?? "").split(/\s+/).slice(0, 2).join(" "),
      });
      assert.deepEqual(
        renderedParsed.machines.map(meaning),
        keptIndices.map((k) => meaning(parsed.machines[k] ?? assert.fail("index"))),
      );
    });
  });

  const refused: [string, string, number[]][] = [
    ["indented comment", "good\n  # indented comment\n", [2]],
    ["whitespace line", "good\n\t \nother\n", [2]],
    ["crlf blank line", "a\r\n\r\nb\r\n", [2]],
    ["bad maxJobs", "a - - -1\nb - - 1x\nc - - 4294967296\n", [1, 2, 3]],
    ["bad speedFactor", "a - - 1 fast\n", [1]],
    ["bad base64", "a - - - - - - !!!\n", [1]],
    ["dash as uri", "- x86_64-linux\n", [1]],
  ];
  for (const [name, text, lines] of refused) {
    it(`refuses what Nix refuses, with line numbers: ${name}`, async () => {
      const dir = join(tmp.dir, `bad-${name.replace(/\W+/g, "-")}`);
      await mkdir(dir, { recursive: true });
      const machines = join(dir, "machines");
      await writeFile(machines, text);
      const nix = await nixParseMachines(machines);
      assert.equal(nix.ok, false, "Nix itself accepts this file");
      const inventory = join(dir, "nixpool.toml");
      const r = await runCli(join(dir, "state"), ["import", machines, "--inventory", inventory]);
      assert.equal(r.exitCode, 2, r.stderr);
      for (const l of lines) assert.ok(r.stderr.includes(`${machines}:${l}: error:`), r.stderr);
      assert.equal(existsSync(inventory), false);
    });
  }

  it("reports a host key that is base64 but not a key (Nix would accept it, ssh would not)", async () => {
    const dir = join(tmp.dir, "notakey");
    await mkdir(dir, { recursive: true });
    const machines = join(dir, "machines");
    await writeFile(machines, `a - - - - - - ${Buffer.from("hello").toString("base64")}\n`);
    const r = await runCli(join(dir, "state"), ["import", machines, "--inventory", join(dir, "inv.toml")]);
    assert.equal(r.exitCode, 2);
    assert.match(r.stderr, /machines:1: error: the host key \(field 8\) decodes to "hello"/);
  });

  it("refuses to overwrite an inventory, replaces it with --force (backup kept), merges with --merge", async () => {
    const dir = join(tmp.dir, "existing");
    await mkdir(dir, { recursive: true });
    const machines = join(dir, "machines");
    await writeFile(machines, "b1.example.com - - 2\nb2.example.com\n");
    const inventory = join(dir, "nixpool.toml");
    const mine = '# my own comment\n[builders.b1]\nhost = "b1.example.com"\nprotocol = "ssh"\n';
    await writeFile(inventory, mine);
    const state = join(dir, "state");

    const refusedRun = await runCli(state, ["import", machines, "--inventory", inventory]);
    assert.equal(refusedRun.exitCode, 2);
    assert.match(refusedRun.stderr, /already exists/);
    assert.equal(await readFile(inventory, "utf8"), mine);

    const merged = await runCli(state, ["import", machines, "--inventory", inventory, "--merge", "--json"]);
    assert.equal(merged.exitCode, 3, merged.stderr);
    const report = JSON.parse(merged.stdout) as {
      builders: { name: string }[];
      skipped: { line: number; reason: string }[];
    };
    assert.deepEqual(
      report.builders.map((b) => b.name),
      ["b2"],
    );
    assert.equal(report.skipped[0]?.line, 1);
    assert.match(report.skipped[0]?.reason ?? "", /already in .* as builder b1/);
    const text = await readFile(inventory, "utf8");
    assert.ok(text.startsWith(mine), "merge keeps the existing text and comments");
    assert.match(text, /\[builders\.b2\]\nhost = "b2\.example\.com"/);

    const forced = await runCli(state, ["import", machines, "--inventory", inventory, "--force"]);
    assert.equal(forced.exitCode, 0, forced.stderr);
    assert.equal(await readFile(`${inventory}.nixpool-backup`, "utf8"), text);
    const list = await runCli(state, ["--inventory", inventory, "builders", "--json"]);
    const names = (JSON.parse(list.stdout) as { builders: { name: string; maxJobs: number }[] }).builders
      .filter((b) => b.name.startsWith("b"))
      .map((b) => [b.name, b.maxJobs]);
    assert.deepEqual(names, [
      ["b1", 2],
      ["b2", 1],
    ]);
  });

  it("prints instead of writing with --print", async () => {
    const dir = join(tmp.dir, "print");
    await mkdir(dir, { recursive: true });
    const machines = join(dir, "machines");
    await writeFile(machines, "ssh-ng://root@10.1.2.3 aarch64-linux - 4\n");
    const inventory = join(dir, "nixpool.toml");
    const r = await runCli(join(dir, "state"), ["import", machines, "--inventory", inventory, "--print"]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(
      r.stdout,
      /\[builders\.10-1-2-3\]\nhost = "10\.1\.2\.3"\nuser = "root"\nprotocol = "ssh-ng"\n/,
    );
    assert.equal(existsSync(inventory), false);
  });
});
