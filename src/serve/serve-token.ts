import { randomBytes } from "node:crypto";
import { chmod, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { readFileIfExists, writeFileAtomic } from "../adapters/fs.js";
import { statePaths } from "../config/state-paths.js";
import { NixpoolError } from "../core/errors.js";
import { registerSecret } from "../core/redact.js";

/** 32 random bytes, base64url: what `nixpool serve` accepts as `Authorization: Bearer …`. */
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

/** A token file's token, or undefined when none was made yet; STATE_RECORD_INVALID names the file. */
async function readTokenFile(path: string, what: string, renewCommand: string): Promise<string | undefined> {
  const text = await readFileIfExists(path);
  if (text === undefined) return undefined;
  const token = text.trim();
  if (!TOKEN.test(token)) {
    throw new NixpoolError("STATE_RECORD_INVALID", `The ${what} file ${path} does not hold a token.`, {
      hint: `Make a new one with: ${renewCommand}`,
    });
  }
  registerSecret(token);
  return token;
}

/** A fresh token written 0600 at `path` (its directory made with `dirMode`). */
async function writeNewToken(path: string, dirMode: number): Promise<string> {
  await mkdir(dirname(path), { recursive: true, mode: dirMode });
  await chmod(dirname(path), dirMode);
  const token = randomBytes(32).toString("base64url");
  registerSecret(token);
  await writeFileAtomic(path, `${token}\n`, { mode: 0o600 });
  return token;
}

/** The coordinator's API token of this state directory, or undefined when none was made yet. */
export async function readServeToken(stateDir: string): Promise<string | undefined> {
  return readTokenFile(statePaths(stateDir).serve.tokenFile, "API token", "nixpool serve token --new");
}

/** The token, made first (0600, in a 0755 directory that also holds the socket) when there is none or `renew`. */
export async function ensureServeToken(stateDir: string, renew = false): Promise<string> {
  const existing = renew ? undefined : await readServeToken(stateDir);
  if (existing !== undefined) return existing;
  return writeNewToken(statePaths(stateDir).serve.tokenFile, 0o755);
}

/** The binary cache's read-only token (what clients put in netrc), or undefined when none was made yet. */
export async function readCacheToken(stateDir: string): Promise<string | undefined> {
  return readTokenFile(statePaths(stateDir).cache.tokenFile, "cache token", "nixpool cache token --new");
}

/** The cache token, made first (0600 in the 0700 cache directory) when there is none or `renew`. */
export async function ensureCacheToken(stateDir: string, renew = false): Promise<string> {
  const existing = renew ? undefined : await readCacheToken(stateDir);
  if (existing !== undefined) return existing;
  return writeNewToken(statePaths(stateDir).cache.tokenFile, 0o700);
}
