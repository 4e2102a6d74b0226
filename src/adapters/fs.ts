import { randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, basename, join } from "node:path";

export interface WriteResult {
  path: string;
  changed: boolean;
  backup?: string;
}

export interface AtomicWriteOptions {
  mode?: number;
  /** Keep the previous content as PATH.nixpool-backup when it changes. */
  backup?: boolean;
}

/**
 * Writes a file atomically (temp file in the same directory, then rename), only when the
 * content differs; optionally keeps the old content as a backup.
 */
export async function writeFileAtomic(
  path: string,
  content: string,
  options: AtomicWriteOptions = {},
): Promise<WriteResult> {
  const old = await readFile(path, "utf8").catch(() => undefined);
  if (old === content) return { path, changed: false };
  await mkdir(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    await writeFile(tmp, content, { mode: options.mode ?? 0o644 });
    if (options.mode !== undefined) await chmod(tmp, options.mode);
    let backup: string | undefined;
    if (options.backup && old !== undefined) {
      backup = `${path}.nixpool-backup`;
      await copyFile(path, backup);
    }
    await rename(tmp, path);
    return backup ? { path, changed: true, backup } : { path, changed: true };
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** A file's text, or undefined when it does not exist; any other error (EACCES, EISDIR) is thrown. */
export async function readFileIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

/** A directory's entry names, or undefined when it does not exist; any other error is thrown. */
export async function readDirIfExists(path: string): Promise<string[] | undefined> {
  try {
    return await readdir(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}
