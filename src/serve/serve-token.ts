import { randomBytes } from "node:crypto";
import { chmod, mkdir } from "node:fs/promises";
import { readFileIfExists, writeFileAtomic } from "../adapters/fs.js";
import { statePaths } from "../config/state-paths.js";
import { NixpoolError } from "../core/errors.js";
import { registerSecret } from "../core/redact.js";

/** 32 random bytes, base64url: what `nixpool serve` accepts as `Authorization: Bearer …`. */
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

/** The coordinator's API token of this state directory, or undefined when none was made yet. */
export async function readServeToken(stateDir: string): Promise<string | undefined> {
  const path = statePaths(stateDir).serve.tokenFile;
  const text = await readFileIfExists(path);
  if (text === undefined) return undefined;
  const token = text.trim();
  if (!TOKEN.test(token)) {
    throw new NixpoolError("STATE_RECORD_INVALID", `The API token file ${path} does not hold a token.`, {
      hint: "Make a new one with: nixpool serve token --new",
    });
  }
  registerSecret(token);
  return token;
}

/** The token, made first (0600, in a 0755 directory that also holds the socket) when there is none or `renew`. */
export async function ensureServeToken(stateDir: string, renew = false): Promise<string> {
  const existing = renew ? undefined : await readServeToken(stateDir);
  if (existing !== undefined) return existing;
  const paths = statePaths(stateDir).serve;
  await mkdir(paths.dir, { recursive: true, mode: 0o755 });
  await chmod(paths.dir, 0o755);
  const token = randomBytes(32).toString("base64url");
  registerSecret(token);
  await writeFileAtomic(paths.tokenFile, `${token}\n`, { mode: 0o600 });
  return token;
}
