import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname } from "node:path";
import {
  isSigningKeyName,
  parseSecretSigningKey,
  renderPublicSigningKey,
  renderSecretSigningKey,
  secretKeyFromSeed,
  SigningKeyError,
  type SecretSigningKey,
} from "../core/binary-cache/signing-key.js";
import { configError, NixpoolError } from "../core/errors.js";
import { registerSecret } from "../core/redact.js";
import { readFileIfExists, writeFileAtomic } from "./fs.js";

/** Where the pool's signing key lives: the secret (0600) and its public half beside it. */
export interface CacheKeyFiles {
  secretKey: string;
  publicKey: string;
}

/** The default key name: `nixpool-HOST-1` (Nix's convention is a host name and a number). */
export function defaultCacheKeyName(): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9.-]/g, "-")
      .replace(/^[^A-Za-z0-9]+/, "") || "host";
  return `nixpool-${host}-1`;
}

/** The pool's secret signing key, or undefined when none was made yet; CACHE_KEY_INVALID names the file. */
export async function readCacheKey(files: CacheKeyFiles): Promise<SecretSigningKey | undefined> {
  const text = await readFileIfExists(files.secretKey);
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  registerSecret(trimmed);
  registerSecret(trimmed.slice(trimmed.indexOf(":") + 1));
  try {
    return parseSecretSigningKey(text);
  } catch (e) {
    throw new NixpoolError(
      "CACHE_KEY_INVALID",
      `The cache signing key ${files.secretKey} is not a Nix secret key (${(e as Error).message})`,
      {
        hint: "Move it away and make a new one with: nixpool cache key --new (clients then need the new public key).",
      },
    );
  }
}

/**
 * The pool's signing key, made first when there is none (or `renew`): a fresh ed25519 seed, the
 * secret written 0600 in a 0700 directory, the public half beside it (0644).
 */
export async function ensureCacheKey(
  files: CacheKeyFiles,
  options: { name?: string; renew?: boolean } = {},
): Promise<{ key: SecretSigningKey; created: boolean }> {
  const existing = options.renew ? undefined : await readCacheKey(files);
  if (existing) return { key: existing, created: false };
  const name = options.name ?? defaultCacheKeyName();
  if (!isSigningKeyName(name)) {
    throw configError("CACHE_KEY_INVALID", `The key name "${name}" is not one Nix accepts.`, {
      hint: "Use letters, digits, '.', '-', '_' and '+', e.g. nixpool cache key --name pool.example.org-1",
    });
  }
  let key: SecretSigningKey;
  try {
    key = secretKeyFromSeed(name, randomBytes(32));
  } catch (e) {
    if (e instanceof SigningKeyError) throw configError("CACHE_KEY_INVALID", e.message);
    throw e;
  }
  const secret = renderSecretSigningKey(key);
  registerSecret(secret);
  registerSecret(secret.slice(secret.indexOf(":") + 1));
  await mkdir(dirname(files.secretKey), { recursive: true, mode: 0o700 });
  // As nix-store --generate-binary-cache-key writes them: no trailing newline.
  await writeFileAtomic(files.secretKey, secret, { mode: 0o600 });
  await writeFileAtomic(files.publicKey, renderPublicSigningKey(key), { mode: 0o644 });
  return { key, created: true };
}
