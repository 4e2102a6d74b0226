import { readdir, readFile } from "node:fs/promises";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { run } from "../../src/adapters/runner.js";
import { waitFor } from "../../src/adapters/wait-for.js";

/** PIDs of the processes inside a network namespace (a local pool host's). */
export async function netnsPids(netns: string): Promise<number[]> {
  const r = await run(["ip", "netns", "pids", netns], { reject: false });
  return r.stdout
    .split("\n")
    .map((l) => Number.parseInt(l, 10))
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** The command lines of a set of processes (those that still exist). */
export async function commandLines(pids: readonly number[]): Promise<string[]> {
  const out: string[] = [];
  for (const pid of pids) {
    const text = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (text) out.push(text.split("\0").join(" ").trim());
  }
  return out;
}

/** Processes (pid and command line) whose environment holds NAME=VALUE: a test marks what it starts this way. */
export async function processesMarked(name: string, value: string): Promise<{ pid: number; cmd: string }[]> {
  const found: { pid: number; cmd: string }[] = [];
  for (const entry of await readdir("/proc")) {
    const pid = Number.parseInt(entry, 10);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const env = await readFile(`/proc/${pid}/environ`, "utf8").catch(() => "");
    if (!env.split("\0").includes(`${name}=${value}`)) continue;
    const [cmd = ""] = await commandLines([pid]);
    found.push({ pid, cmd });
  }
  return found;
}

/** Kills every process of a network namespace at once (a builder host dying). */
export async function killNetns(netns: string): Promise<number> {
  const pids = await netnsPids(netns);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  return pids.length;
}

/** Waits until sshd answers on ADDRESS:22 again (after a SIGHUP it re-executes itself). */
export async function waitForSsh(address: string): Promise<void> {
  const banner = () =>
    new Promise<string>((resolve) => {
      const s = connect(22, address);
      s.setTimeout(2000, () => s.destroy());
      s.once("data", (d) => {
        s.destroy();
        resolve(d.toString());
      });
      s.once("error", () => resolve(""));
      s.once("close", () => resolve(""));
    });
  const back = await waitFor(async () => (await banner()).startsWith("SSH-2.0-"), { timeoutMs: 20_000 });
  if (!back) assert.fail(`sshd on ${address} did not come back after SIGHUP`);
}
