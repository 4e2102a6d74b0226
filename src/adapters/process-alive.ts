import { readFileSync } from "node:fs";

/**
 * Whether a process is alive: it exists (signal 0 succeeds, or is refused because another
 * user owns it) and is not a zombie waiting to be reaped. A zombie holds its pid but does
 * nothing: a lock, a lease or a host whose process is a zombie has no live holder.
 */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch (e) {
    // Gone between the two looks; without /proc, signal 0 is all there is to know.
    return (e as NodeJS.ErrnoException).code !== "ENOENT";
  }
  // /proc/PID/stat: "pid (comm) STATE …"; comm may hold spaces or parentheses, so cut at the last ")".
  const close = stat.lastIndexOf(")");
  return stat.slice(close + 2, close + 3) !== "Z";
}
