import { mkdir, open } from "node:fs/promises";
import { dirname } from "node:path";
import { NixpoolError } from "../core/errors.js";
import { waitFor } from "../adapters/wait-for.js";

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

type Flock = (fd: number, operation: number) => number;
let flockFn: Promise<Flock> | undefined;

/**
 * flock(2) through koffi (the FFI serve already uses for SO_PEERCRED): Node has no API for it.
 * The kernel drops the lock when its holder dies, so no stale lock is ever taken over (taking one
 * over by pid raced: a process could remove a lock another had just taken).
 */
function loadFlock(): Promise<Flock> {
  flockFn ??= (async () => {
    const koffi = (await import("koffi")).default;
    const libc = koffi.load("libc.so.6");
    const f = libc.func("int flock(int fd, int operation)");
    return (fd: number, operation: number) => f(fd, operation) as number;
  })();
  return flockFn;
}

/**
 * Runs fn while holding an exclusive lock on `lockFile` (flock, non-blocking tries every 50 ms for
 * up to timeoutMs). The file is only something to lock: it stays empty, so a command that is
 * refused changes nothing in the state directory, not even the lock file.
 */
export async function withLock<T>(lockFile: string, fn: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  await mkdir(dirname(lockFile), { recursive: true, mode: 0o755 });
  const flock = await loadFlock();
  const fh = await open(lockFile, "a", 0o644);
  try {
    const taken = await waitFor(() => flock(fh.fd, LOCK_EX | LOCK_NB) === 0, { timeoutMs, intervalMs: 50 });
    if (!taken) {
      throw new NixpoolError(
        "ACCESS_LOCKED",
        `The access state is locked by another process (${lockFile}).`,
        {
          hint: `Wait for the other nixpool access command to finish, then retry (see who holds it: fuser ${lockFile}).`,
        },
      );
    }
    try {
      return await fn();
    } finally {
      flock(fh.fd, LOCK_UN);
    }
  } finally {
    await fh.close();
  }
}
