import { createHash } from "node:crypto";

/** Public key types nixpool accepts anywhere: host keys, login keys, users files, GitHub (no DSA, no certificates). */
export const KEY_TYPES = [
  "ssh-ed25519",
  "ssh-rsa",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
] as const;
export type KeyType = (typeof KEY_TYPES)[number];

/**
 * The one public key type: key type, base64 blob, and a comment kept only for display.
 * `PublicKey` (type one of KEY_TYPES) is what parseKeyLine accepts anywhere in nixpool;
 * `PublicKey<string>` is a key as ssh reports it (keyscan, known_hosts, a .pub file),
 * read with readKeyFields and used only to report what was found.
 */
export interface PublicKey<T extends string = KeyType> {
  type: T;
  blob: string;
  comment: string;
}

/** Longest key line accepted (an RSA-16384 key is about 2.8 KB). */
export const MAX_KEY_LINE_LENGTH = 8192;
const MAX_COMMENT_LENGTH = 200;
const MIN_RSA_BITS = 2048;

/** Why a key line was refused; the caller wraps it into an error naming where the line came from. */
export class KeyLineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KeyLineError";
  }
}

function isKeyType(s: string): s is KeyType {
  return (KEY_TYPES as readonly string[]).includes(s);
}

/** Reads SSH wire-format strings (uint32 length + bytes) from a key blob. */
function readWireStrings(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < bytes.length) {
    if (at + 4 > bytes.length) throw new KeyLineError("the key data is truncated");
    const len = bytes.readUInt32BE(at);
    at += 4;
    if (len > bytes.length - at) throw new KeyLineError("the key data is truncated");
    out.push(bytes.subarray(at, at + len));
    at += len;
  }
  return out;
}

function bitLength(mpint: Buffer): number {
  let i = 0;
  while (i < mpint.length && mpint[i] === 0) i++;
  if (i === mpint.length) return 0;
  return (mpint.length - i - 1) * 8 + (32 - Math.clz32(mpint[i] ?? 0));
}

/** Checks the decoded blob: its embedded type must match the line's, and its fields must have the right shape. */
function checkBlob(type: KeyType, bytes: Buffer): void {
  const parts = readWireStrings(bytes);
  const embedded = parts[0]?.toString("latin1");
  if (embedded !== type) {
    throw new KeyLineError(`the key data says "${embedded ?? ""}" but the line says "${type}"`);
  }
  const expectedParts: Record<KeyType, number> = {
    "ssh-ed25519": 2,
    "ssh-rsa": 3,
    "ecdsa-sha2-nistp256": 3,
    "ecdsa-sha2-nistp384": 3,
    "ecdsa-sha2-nistp521": 3,
    "sk-ssh-ed25519@openssh.com": 3,
    "sk-ecdsa-sha2-nistp256@openssh.com": 4,
  };
  if (parts.length !== expectedParts[type]) throw new KeyLineError(`the ${type} key data is malformed`);
  if (type === "ssh-ed25519" || type === "sk-ssh-ed25519@openssh.com") {
    if (parts[1]?.length !== 32) throw new KeyLineError("the ed25519 public key is not 32 bytes");
  }
  if (type === "ssh-rsa") {
    const bits = bitLength(parts[2] ?? Buffer.alloc(0));
    if (bits < MIN_RSA_BITS)
      throw new KeyLineError(`the RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are required`);
  }
  if (type.startsWith("ecdsa-") || type.startsWith("sk-ecdsa-")) {
    const curve = parts[1]?.toString("latin1");
    const want = type.startsWith("sk-") ? "nistp256" : type.slice("ecdsa-sha2-".length);
    if (curve !== want)
      throw new KeyLineError(`the ECDSA key names curve "${curve ?? ""}", expected "${want}"`);
  }
}

/**
 * Parses one public key line "TYPE BASE64 [COMMENT]". Refuses anything that is not exactly that:
 * leading authorized_keys options, unknown or certificate types, control characters, bad base64,
 * or a blob whose embedded type differs from the line's.
 */
export function parseKeyLine(line: string): PublicKey {
  if (line.length > MAX_KEY_LINE_LENGTH)
    throw new KeyLineError(`the key line is longer than ${MAX_KEY_LINE_LENGTH} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(line)) {
    throw new KeyLineError("the key line contains a newline or another control character");
  }
  const trimmed = line.trim();
  if (trimmed === "") throw new KeyLineError("the key line is empty");
  const [type = "", blob = "", ...rest] = trimmed.split(/ +/);
  if (!isKeyType(type)) {
    if (
      /[=,"]/.test(type) ||
      /^(restrict|command|from|environment|no-|permit|principals|tunnel|cert-authority|expiry-time)/i.test(
        type,
      )
    ) {
      throw new KeyLineError(
        `the key line starts with authorized_keys options ("${type.slice(0, 40)}"); give the bare key "TYPE BASE64 [COMMENT]"`,
      );
    }
    throw new KeyLineError(`"${type.slice(0, 40)}" is not an accepted key type (${KEY_TYPES.join(", ")})`);
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) throw new KeyLineError("the key data is not base64");
  const bytes = Buffer.from(blob, "base64");
  if (bytes.toString("base64") !== blob) throw new KeyLineError("the key data is not canonical base64");
  checkBlob(type, bytes);
  const comment = rest.join(" ");
  if (comment.length > MAX_COMMENT_LENGTH)
    throw new KeyLineError(`the key comment is longer than ${MAX_COMMENT_LENGTH} characters`);
  if (!/^[\x20-\x7e]*$/.test(comment)) throw new KeyLineError("the key comment has non-ASCII characters");
  return { type, blob, comment };
}

/** Why a line is not an acceptable public key, or undefined when it is. */
export function publicKeyProblem(line: string): string | undefined {
  try {
    parseKeyLine(line);
    return undefined;
  } catch (e) {
    if (e instanceof KeyLineError) return e.message;
    throw e;
  }
}

/** The key as "TYPE BASE64" (comment dropped), the form used for comparison and output. */
export function formatKey(k: Pick<PublicKey<string>, "type" | "blob">): string {
  return `${k.type} ${k.blob}`;
}

/** Keeps the first occurrence of each key (same type and blob). */
export function dedupeKeys<T extends Pick<PublicKey<string>, "type" | "blob">>(keys: readonly T[]): T[] {
  const seen = new Set<string>();
  return keys.filter((k) => {
    const id = formatKey(k);
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/** Reads "TYPE BLOB [COMMENT]" without judging it (what ssh printed); undefined without two fields. */
export function readKeyFields(line: string): PublicKey<string> | undefined {
  const [type, blob, ...rest] = line.trim().split(/\s+/);
  if (!type || !blob) return undefined;
  return { type, blob, comment: rest.join(" ") };
}

/** OpenSSH's SHA256 fingerprint of a key blob ("SHA256:…", unpadded base64). */
export function fingerprintOf(key: Pick<PublicKey<string>, "blob">): string {
  const digest = createHash("sha256").update(Buffer.from(key.blob, "base64")).digest("base64");
  return `SHA256:${digest.replace(/=+$/, "")}`;
}

/** How ssh -v names a key type ("ssh-ed25519" → "ED25519"). */
export function keyTypeLabel(type: string): string {
  if (type === "ssh-ed25519") return "ED25519";
  if (type === "ssh-rsa" || type.startsWith("rsa-sha2")) return "RSA";
  if (type.startsWith("ecdsa-sha2")) return "ECDSA";
  if (type.startsWith("sk-ssh-ed25519")) return "ED25519-SK";
  if (type.startsWith("sk-ecdsa")) return "ECDSA-SK";
  if (type === "ssh-dss") return "DSA";
  return type.toUpperCase();
}
