import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";

/**
 * Nix's binary cache signing keys (`nix-store --generate-binary-cache-key NAME SECRET PUBLIC`):
 * a secret key is `NAME:base64(64 bytes: the ed25519 seed, then the public key)`, a public key
 * `NAME:base64(32 bytes)`, a signature `NAME:base64(64 bytes)` over a path's fingerprint. Signing
 * is deterministic (ed25519), so it lives here with the formats; making a key (randomness) and
 * keeping it (a 0600 file) are src/adapters/cache-key.ts.
 */

/** A key name as Nix takes it: anything but `:` and whitespace; by convention HOST-N. */
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

export interface SecretSigningKey {
  name: string;
  /** The 32-byte ed25519 seed. */
  seed: Uint8Array;
  /** The 32-byte public key the secret key carries. */
  publicKey: Uint8Array;
}

export interface PublicSigningKey {
  name: string;
  key: Uint8Array;
}

/** Why a key or signature text was refused; callers wrap it with where the text came from. */
export class SigningKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SigningKeyError";
  }
}

/** Whether `name` can name a signing key (it goes before the `:` of every signature). */
export function isSigningKeyName(name: string): boolean {
  return KEY_NAME.test(name);
}

function splitKey(text: string, what: string, bytes: number): { name: string; raw: Uint8Array } {
  const t = text.trim();
  const colon = t.indexOf(":");
  if (colon <= 0) throw new SigningKeyError(`${what} is not NAME:BASE64.`);
  const name = t.slice(0, colon);
  const b64 = t.slice(colon + 1);
  if (!isSigningKeyName(name)) throw new SigningKeyError(`${what} has a name Nix does not accept.`);
  if (!BASE64.test(b64)) throw new SigningKeyError(`${what} is not base64 after its name.`);
  const raw = Buffer.from(b64, "base64");
  if (raw.length !== bytes) throw new SigningKeyError(`${what} holds ${raw.length} bytes, not ${bytes}.`);
  return { name, raw: new Uint8Array(raw) };
}

/** Reads a secret key in Nix's format; checks that its public half matches its seed. */
export function parseSecretSigningKey(text: string): SecretSigningKey {
  const { name, raw } = splitKey(text, "The secret key", 64);
  const key: SecretSigningKey = { name, seed: raw.slice(0, 32), publicKey: raw.slice(32) };
  const derived = publicKeyOfSeed(key.seed);
  if (!Buffer.from(derived).equals(Buffer.from(key.publicKey))) {
    throw new SigningKeyError("The secret key's public half does not belong to its seed.");
  }
  return key;
}

/** Reads a public key (`trusted-public-keys` entry) in Nix's format. */
export function parsePublicSigningKey(text: string): PublicSigningKey {
  const { name, raw } = splitKey(text, "The public key", 32);
  return { name, key: raw };
}

export function renderSecretSigningKey(k: SecretSigningKey): string {
  return `${k.name}:${Buffer.concat([k.seed, k.publicKey]).toString("base64")}`;
}

/** The `trusted-public-keys` entry of a key. */
export function renderPublicSigningKey(k: PublicSigningKey | SecretSigningKey): string {
  const raw = "key" in k ? k.key : k.publicKey;
  return `${k.name}:${Buffer.from(raw).toString("base64")}`;
}

/** A secret key from a name and a 32-byte seed (its public half derived). */
export function secretKeyFromSeed(name: string, seed: Uint8Array): SecretSigningKey {
  if (!isSigningKeyName(name)) throw new SigningKeyError(`The key name "${name}" is not one Nix accepts.`);
  if (seed.length !== 32) throw new SigningKeyError(`An ed25519 seed is 32 bytes, not ${seed.length}.`);
  return { name, seed: new Uint8Array(seed), publicKey: publicKeyOfSeed(seed) };
}

// RFC 8410 encodings of a raw ed25519 key: a fixed prefix, then the 32 bytes.
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** Key objects by seed: making one costs far more than a signature, and a cache signs every narinfo. */
const privateKeys = new WeakMap<Uint8Array, KeyObject>();

function privateKeyObject(seed: Uint8Array): KeyObject {
  let k = privateKeys.get(seed);
  if (!k) {
    k = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
    privateKeys.set(seed, k);
  }
  return k;
}

function publicKeyObject(key: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, key]), format: "der", type: "spki" });
}

function publicKeyOfSeed(seed: Uint8Array): Uint8Array {
  const der = createPublicKey(privateKeyObject(seed)).export({ format: "der", type: "spki" });
  return new Uint8Array(der.subarray(SPKI_PREFIX.length));
}

/** `NAME:base64(signature)`: the Sig line of a narinfo over `fingerprint`. */
export function signFingerprint(k: SecretSigningKey, fingerprint: string): string {
  const sig = sign(null, Buffer.from(fingerprint, "utf8"), privateKeyObject(k.seed));
  return `${k.name}:${sig.toString("base64")}`;
}

/** Whether `signature` (`NAME:base64`) is `key`'s over `fingerprint` (as Nix checks a narinfo). */
export function verifyFingerprint(key: PublicSigningKey, fingerprint: string, signature: string): boolean {
  const colon = signature.indexOf(":");
  if (colon <= 0 || signature.slice(0, colon) !== key.name) return false;
  const raw = Buffer.from(signature.slice(colon + 1), "base64");
  if (raw.length !== 64) return false;
  return verify(null, Buffer.from(fingerprint, "utf8"), publicKeyObject(key.key), raw);
}
