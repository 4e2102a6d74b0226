import { mkdir, open, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { NixpoolError } from "../core/errors.js";
import { isProcessAlive } from "../adapters/process-alive.js";
import { readFileIfExists } from "../adapters/fs.js";
import { waitFor } from "../adapters/wait-for.js";

/** One try at the lock: true when it is ours now, else the pid that holds it (0 when unreadable). */
async function tryLock(lockFile: string): Promise<true | number> {
  for (;;) {
    try {
      const fh = await open(lockFile, "wx", 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number(((await readFileIfExists(lockFile)) ?? "").trim());
      if (!Number.isInteger(pid) || pid <= 0) return 0;
      if (isProcessAlive(pid)) return pid;
      // Left by a dead process: take it over at once.
      await rm(lockFile, { force: true });
    }
  }
}

/**
 * Runs fn while holding an exclusive lock file (O_EXCL, holding our pid). A lock left by a dead
 * process is taken over; a live one is waited for up to timeoutMs.
 */
export async function withLock<T>(lockFile: string, fn: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  await mkdir(dirname(lockFile), { recursive: true, mode: 0o755 });
  let holder = 0;
  const taken = await waitFor(
    async () => {
      const r = await tryLock(lockFile);
      if (r === true) return true;
      holder = r;
      return false;
    },
    { timeoutMs, intervalMs: 50 },
  );
  if (!taken) {
    throw new NixpoolError(
      "ACCESS_LOCKED",
      `The access state is locked by process ${holder || "?"} (${lockFile}).`,
      { hint: "Wait for the other nixpool access command to finish, then retry." },
    );
  }
  try {
    return await fn();
  } finally {
    await rm(lockFile, { force: true });
  }
}
