import { createReadStream, createWriteStream } from "node:fs";
import { access, constants } from "node:fs/promises";
import { join } from "node:path";
import { finished } from "node:stream/promises";
import { NixpoolError } from "../core/errors.js";
import { spawnPiped } from "./piped-process.js";

/** Streams a NAR into `file` through `dump` (a store session's DumpStorePath), closing the file after. */
export async function writeNarFile(
  file: string,
  dump: (sink: NodeJS.WritableStream) => Promise<void>,
): Promise<void> {
  const out = createWriteStream(file, { mode: 0o600 });
  try {
    await dump(out);
  } finally {
    out.end();
    await finished(out).catch(() => undefined);
  }
}

/** Writes the NAR of a path valid in this machine's store into `file` (`nix-store --dump`). */
export async function dumpLocalPath(path: string, file: string): Promise<void> {
  const proc = spawnPiped(["nix-store", "--dump", path]);
  proc.stdin.end();
  proc.stderr.resume();
  const out = createWriteStream(file, { mode: 0o600 });
  proc.stdout.pipe(out);
  const [exit] = await Promise.all([proc.exited, finished(out)]);
  if (exit.exitCode !== 0) {
    throw new NixpoolError(
      "PROCESS_FAILED",
      `nix-store --dump ${path} failed (exit ${String(exit.exitCode)}).`,
      {
        hint: `Check the path with: nix-store --verify-path ${path}`,
      },
    );
  }
}

/** Unpacks a NAR file into `dest` (which must not exist) with `nix-store --restore`. */
export async function restoreNar(narFile: string, dest: string): Promise<void> {
  const proc = spawnPiped(["nix-store", "--restore", dest]);
  const stderr: string[] = [];
  proc.stderr.on("data", (c: Buffer) => stderr.push(c.toString("utf8")));
  proc.stdout.resume();
  createReadStream(narFile).pipe(proc.stdin);
  const exit = await proc.exited;
  if (exit.exitCode !== 0) {
    throw new NixpoolError(
      "PROCESS_FAILED",
      `nix-store --restore ${dest} failed: ${stderr.join("").trim()}`,
      {
        hint: `The NAR is kept in ${narFile}; inspect it with: nix-store --restore DIR < ${narFile}`,
      },
    );
  }
}

/** Whether an executable of that name is on PATH. */
export async function isOnPath(name: string, path = process.env["PATH"] ?? ""): Promise<boolean> {
  for (const dir of path.split(":").filter(Boolean)) {
    if (
      await access(join(dir, name), constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return true;
  }
  return false;
}
