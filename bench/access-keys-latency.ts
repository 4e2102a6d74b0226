// Measures `nixpool access keys` with 10,000 members (docs/performance.md, "Access keys latency"):
// the installed sh keys command, the node entry point and the full CLI, as sshd would run them.
// Run (as root: it installs the sh command under /run): npm run build && node --import tsx bench/access-keys-latency.ts [members] [runs]
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { run } from "../src/adapters/runner.js";

const members = Number(process.argv[2] ?? 10_000);
const runs = Number(process.argv[3] ?? 50);
const root = resolve(import.meta.dirname, "..");
const cli = join(root, "dist/cli/main.js");
const entry = join(root, "dist/access/keys-command.js");

function keyLine(): string {
  const wire = (b: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  return `ssh-ed25519 ${Buffer.concat([wire(Buffer.from("ssh-ed25519")), wire(randomBytes(32))]).toString("base64")}`;
}

async function time(argv: string[]): Promise<number> {
  const t = process.hrtime.bigint();
  await run(argv, { timeout: 600_000 });
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function stats(xs: number[]): { median: number; p95: number } {
  const sorted = [...xs].sort((a, b) => a - b);
  return {
    median: sorted[Math.floor(sorted.length / 2)] ?? 0,
    p95: sorted[Math.floor(sorted.length * 0.95)] ?? 0,
  };
}

/** Runs the commands in turn, round after round, so that machine load hits them alike. */
async function sampleInterleaved(argvs: string[][]): Promise<number[][]> {
  const out: number[][] = argvs.map(() => []);
  for (let i = 0; i < runs; i++) {
    for (const [j, argv] of argvs.entries()) out[j]?.push(await time(argv));
  }
  return out;
}

const state = await mkdtemp(join(tmpdir(), "nixpool-access-perf-"));
// sshd accepts only a command path owned by root and not writable by others: not under /tmp.
const prefix = await mkdtemp("/run/nixpool-access-perf-");
try {
  await chmod(prefix, 0o755);
  const lines = ["version = 1", ""];
  for (let i = 0; i < members; i++) {
    const name = `user${String(i).padStart(5, "0")}`;
    lines.push(`[users.${name}]`, `keys = [ "${keyLine()}", "${keyLine()}" ]`);
    if (i === 0) lines.push("trusted = true");
    else lines.push(`vouchedBy = "user00000"`);
    if (i % 10 === 0) lines.push(`expires = "2030-01-01T00:00:00.000Z"`);
    lines.push("");
  }
  await writeFile(join(state, "users.toml"), lines.join("\n"));
  const n = (args: string[]) => ["node", cli, "--state-dir", state, ...args];
  const sync = await time(n(["access", "sync"]));
  await run(n(["access", "install-keys-command", "--prefix", prefix]));
  const sh = join(prefix, "keys-command");
  const probe = `user${String(Math.floor(members / 2)).padStart(5, "0")}`;
  // [label, argv, index of the row whose start-up time it is compared with]
  const rows: [string, string[], number | undefined][] = [
    ["node -e 0 (node start alone)", ["node", "-e", "0"], undefined],
    ["sh -c : (sh start alone)", ["sh", "-c", ":"], undefined],
    [`installed keys-command ${probe} (sh, what sshd runs)`, [sh, "--state-dir", state, probe], 1],
    ["installed keys-command unknown-user", [sh, "--state-dir", state, "nosuchuser"], 1],
    [`keys-command.js ${probe} (node entry)`, ["node", entry, "--state-dir", state, probe], 0],
    ["keys-command.js unknown-user", ["node", entry, "--state-dir", state, "nosuchuser"], 0],
    [`nixpool access keys ${probe} (full CLI)`, n(["access", "keys", probe]), 0],
  ];
  console.log(`${members} members, ${runs} runs each, ${new Date().toISOString()}`);
  console.log(`access sync (index of ${members} members written from scratch): ${sync.toFixed(0)} ms`);
  console.log(
    "| command | median ms | p95 ms | median minus its interpreter's start, ms |\n|---|---|---|---|",
  );
  const samples = await sampleInterleaved(rows.map(([, argv]) => argv));
  for (const [j, [label, , baseRow]] of rows.entries()) {
    const xs = samples[j] ?? [];
    const s = stats(xs);
    const base = baseRow === undefined ? undefined : (samples[baseRow] ?? []);
    const over = base ? stats(xs.map((x, i) => x - (base[i] ?? 0))).median.toFixed(1) : "-";
    console.log(`| ${label} | ${s.median.toFixed(1)} | ${s.p95.toFixed(1)} | ${over} |`);
  }
  const add = await time(n(["access", "add", "newcomer", "--key", keyLine(), "--vouched-by", "user00000"]));
  const remove = await time(n(["access", "remove", "newcomer"]));
  console.log(
    `access add with ${members} members: ${add.toFixed(0)} ms; access remove: ${remove.toFixed(0)} ms`,
  );
  // With static files (sync --write DIR), add and remove also bring DIR up to date.
  const written = await time(n(["access", "sync", "--write", join(state, "authorized_keys.d")]));
  const addStatic = await time(
    n(["access", "add", "newcomer", "--key", keyLine(), "--vouched-by", "user00000"]),
  );
  const removeStatic = await time(n(["access", "remove", "newcomer"]));
  console.log(
    `access sync --write (${members} files): ${written.toFixed(0)} ms; then access add: ${addStatic.toFixed(0)} ms; access remove: ${removeStatic.toFixed(0)} ms`,
  );
} finally {
  await rm(state, { recursive: true, force: true });
  await rm(prefix, { recursive: true, force: true });
}
