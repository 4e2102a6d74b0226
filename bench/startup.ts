// Start-up time of the CLI, paired against node's own start in the same run (docs/performance.md,
// "Start-up"). Run: npm run build && node --import tsx bench/startup.ts [runs]
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";

const runs = Number(process.argv[2] ?? 30);
const cli = resolve(import.meta.dirname, "../dist/cli/main.js");
const state = await mkdtemp(join(tmpdir(), "nixpool-startup-"));

// spawnSync, not the runner: the runner's own overhead is not what is measured here.
function time(argv: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(argv[0] ?? "", argv.slice(1), { cwd: state, stdio: ["ignore", "ignore", "pipe"] });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${argv.join(" ")} exited ${r.status}: ${r.stderr.toString()}`);
  return ms;
}

const cases: [string, string[]][] = [
  ["node -e 0", ["node", "-e", "0"]],
  ["nixpool --version", ["node", cli, "--version"]],
  ["nixpool --help", ["node", cli, "--help"]],
  ["nixpool builders", ["node", cli, "--state-dir", state, "builders"]],
  ["nixpool worker --help", ["node", cli, "worker", "--help"]],
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

try {
  const load = loadavg()[0]?.toFixed(1);
  // Interleaved, round after round, so that machine load hits every case alike.
  const samples = cases.map(() => [] as number[]);
  for (const [, argv] of cases) time(argv); // warm the file cache
  for (let i = 0; i < runs; i++) for (const [j, [, argv]] of cases.entries()) samples[j]?.push(time(argv));
  const base = median(samples[0] ?? []);
  console.log(`runs: ${runs}, load average before: ${load}, after: ${loadavg()[0]?.toFixed(1)}`);
  console.log("| command | median | ratio to node -e 0 |");
  console.log("| --- | --- | --- |");
  for (const [j, [name]] of cases.entries()) {
    const m = median(samples[j] ?? []);
    console.log(`| \`${name}\` | ${m.toFixed(0)} ms | ${(m / base).toFixed(2)}× |`);
  }
} finally {
  await rm(state, { recursive: true, force: true });
}
