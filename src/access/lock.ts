import { mkdir, open, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { NixpoolError } from "../core/errors.js";
import { isProcessAlive } from "../adapters/process-alive.js";
import { readFileIfExists } from "../adapters/fs.js";

/**
 * Runs fn while holding an exclusive lock file (O_EXCL, holding our pid). A lock left by a dead
 * process is taken over; a live one is waited for up to timeoutMs.
 */
export async function withLock<T>(lockFile: string, fn: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  await mkdir(dirname(lockFile), { recursive: true, mode: 0o755 });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fh = await open(lockFile, "wx", 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number(((await readFileIfExists(lockFile)) ?? "").trim());
      if (Number.isInteger(pid) && pid > 0 && !isProcessAlive(pid)) {
        await rm(lockFile, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new NixpoolError(
          "ACCESS_LOCKED",
          `The access state is locked by process ${pid || "?"} (${lockFile}).`,
          {
            hint: "Wait for the other nixpool access command to finish, then retry.",
          },
        );
      }
      await new Promise((r) => setTimeout(r, 25 + Math.random() * 50));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockFile, { force: true });
  }
}
