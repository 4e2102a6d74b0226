import { appendFile, chmod, mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readFileIfExists, writeFileAtomic } from "../adapters/fs.js";
import { run } from "../adapters/runner.js";
import { renderKeyId, type AccessProtocol } from "../core/access/authorized-keys.js";
import {
  isSameRevocation,
  renderKrlSpec,
  renderSignArgv,
  type CertUse,
  type Revocation,
  type Validity,
} from "../core/access/cert.js";
import { KeyLineError, formatKey, parseKeyLine } from "../core/public-key.js";
import { configError, NixpoolError } from "../core/errors.js";
import { withLock } from "./lock.js";
import { caPaths } from "../config/state-paths.js";

/** Files of nixpool's user CA. */
export interface CaPaths {
  dir: string;
  key: string;
  pub: string;
  krl: string;
  serial: string;
  issued: string;
  revoked: string;
  lock: string;
}

/** The CA's files inside its directory (the layout is config/state-paths.ts's). */
export function resolveCaPaths(dir: string): CaPaths {
  return caPaths(dir);
}

/** One issued certificate, as recorded in issued.jsonl. */
export interface IssuedCert {
  serial: number;
  keyId: string;
  user: string;
  principals: string[];
  validFrom: string;
  validTo: string;
  key: string;
  issuedAt: string;
  /** What it is for; absent in older ledgers: "builder". */
  use?: CertUse;
}

/** Whether `nixpool ca init` has run here. */
export async function caExists(p: CaPaths): Promise<boolean> {
  return (await readFileIfExists(p.pub)) !== undefined;
}

function noCa(p: CaPaths) {
  return configError("CA_MISSING", `No CA exists in ${p.dir}.`, { hint: "Create one with: nixpool ca init" });
}

/** Writes the KRL for these revocations: built in a temp file by ssh-keygen -k, then renamed over the old one. */
async function writeKrl(p: CaPaths, revocations: readonly Revocation[]): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), "nixpool-krl-"));
  try {
    const spec = join(tmp, "spec");
    await writeFile(spec, renderKrlSpec(revocations));
    const out = join(tmp, "revoked.krl");
    await run(["ssh-keygen", "-q", "-k", "-f", out, "-s", p.pub, spec], { timeout: 30_000 });
    const staged = join(p.dir, `.revoked.krl.${process.pid}.tmp`);
    await writeFile(staged, await readFile(out), { mode: 0o644 });
    await rename(staged, p.krl);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Creates the CA key pair (private key 0600, directory 0700: sshd reads it as root) and an empty KRL; refuses to replace an existing CA. */
export async function initCa(p: CaPaths): Promise<{ publicKey: string }> {
  await mkdir(p.dir, { recursive: true, mode: 0o700 });
  await chmod(p.dir, 0o700);
  return withLock(p.lock, async () => {
    if (await caExists(p)) {
      throw configError("CA_EXISTS", `A CA already exists in ${p.dir}.`, {
        hint: "Keep it; sign with: nixpool ca sign USER --key FILE.pub",
      });
    }
    const tmp = await mkdtemp(join(p.dir, ".init-"));
    try {
      await run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nixpool-user-ca", "-f", join(tmp, "ca")],
        { timeout: 30_000 },
      );
      await chmod(join(tmp, "ca"), 0o600);
      await rename(join(tmp, "ca"), p.key);
      await rename(join(tmp, "ca.pub"), p.pub);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    await writeFileAtomic(p.serial, "0\n", { mode: 0o644 });
    await writeFileAtomic(p.revoked, "[]\n", { mode: 0o644 });
    await writeKrl(p, []);
    return { publicKey: (await readFile(p.pub, "utf8")).trim() };
  });
}

export interface SignInput {
  user: string;
  /** The user's public key line ("TYPE BASE64 [COMMENT]"). */
  publicKey: string;
  principals: string[];
  validity: Validity;
  protocol: AccessProtocol;
  now: number;
  use?: CertUse;
}

/** Signs a user certificate with a fresh serial (never reused, even after a crash) and records it. */
export async function signCert(p: CaPaths, input: SignInput): Promise<{ cert: string; issued: IssuedCert }> {
  if (!(await caExists(p))) throw noCa(p);
  let key;
  try {
    key = parseKeyLine(input.publicKey);
  } catch (e) {
    if (!(e instanceof KeyLineError)) throw e;
    throw configError(
      "CERT_KEY_INVALID",
      `The public key to sign for "${input.user}" is refused: ${e.message}.`,
      {
        hint: "Pass the user's public key file: --key ~/.ssh/id_ed25519.pub",
      },
    );
  }
  return withLock(p.lock, async () => {
    const last = Number((await readFileIfExists(p.serial))?.trim() ?? "0");
    if (!Number.isSafeInteger(last) || last < 0) {
      throw new NixpoolError("CA_SERIAL_DAMAGED", `The serial counter ${p.serial} is damaged.`, {
        hint: `Set it to the highest serial in ${p.issued}.`,
      });
    }
    const serial = last + 1;
    await writeFileAtomic(p.serial, `${serial}\n`, { mode: 0o644 });
    const keyId = renderKeyId(input.user, serial);
    const tmp = await mkdtemp(join(tmpdir(), "nixpool-sign-"));
    try {
      const pubFile = join(tmp, "key.pub");
      await writeFile(pubFile, `${formatKey(key)} ${input.user}\n`);
      await run(
        renderSignArgv({
          caKeyFile: p.key,
          publicKeyFile: pubFile,
          keyId,
          principals: input.principals,
          validity: input.validity,
          serial,
          protocol: input.protocol,
          use: input.use ?? "builder",
        }),
        { timeout: 30_000 },
      );
      const cert = (await readFile(join(tmp, "key-cert.pub"), "utf8")).trim();
      const issued: IssuedCert = {
        serial,
        keyId,
        user: input.user,
        principals: input.principals,
        validFrom: new Date(input.validity.fromMs).toISOString(),
        validTo: new Date(input.validity.toMs).toISOString(),
        key: formatKey(key),
        issuedAt: new Date(input.now).toISOString(),
        use: input.use ?? "builder",
      };
      await appendFile(p.issued, `${JSON.stringify(issued)}\n`, { mode: 0o644 });
      return { cert, issued };
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
}

/** Every certificate issued so far (from the ledger). */
export async function readIssued(p: CaPaths): Promise<IssuedCert[]> {
  const text = (await readFileIfExists(p.issued)) ?? "";
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as IssuedCert);
}

/** The revocations in force (the ledger the KRL is built from). */
export async function readRevoked(p: CaPaths): Promise<Revocation[]> {
  const text = (await readFileIfExists(p.revoked)) ?? "[]";
  return JSON.parse(text) as Revocation[];
}

export interface RevokeInput {
  serials: number[];
  keyIds: string[];
  /** Revoke every certificate issued to these users. */
  users: string[];
}

/** Adds revocations and replaces the KRL atomically; returns what is now revoked by this call. */
export async function revokeCerts(
  p: CaPaths,
  input: RevokeInput,
): Promise<{ added: Revocation[]; total: number }> {
  if (!(await caExists(p))) throw noCa(p);
  return withLock(p.lock, async () => {
    const issued = await readIssued(p);
    const wanted: Revocation[] = [
      ...input.serials.map((serial) => ({ serial })),
      ...input.keyIds.map((keyId) => ({ keyId })),
      ...issued.filter((c) => input.users.includes(c.user)).map((c) => ({ serial: c.serial })),
    ];
    for (const u of input.users) {
      if (!issued.some((c) => c.user === u)) {
        throw configError("CERT_UNKNOWN", `No certificate was issued to "${u}".`, {
          hint: "See the ledger: nixpool ca list",
        });
      }
    }
    const current = await readRevoked(p);
    const added = wanted.filter(
      (w, i) =>
        !current.some((c) => isSameRevocation(c, w)) && wanted.findIndex((x) => isSameRevocation(x, w)) === i,
    );
    const next = [...current, ...added];
    // Ledger first: if the KRL step fails, a retry rebuilds it from the ledger, never from less.
    await writeFileAtomic(p.revoked, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o644 });
    await writeKrl(p, next);
    return { added, total: next.length };
  });
}

/**
 * Revokes every certificate issued to a removed member (none when there is no CA), so a later
 * member given the same name never inherits them; returns how many were newly revoked.
 */
export async function revokeUserCerts(p: CaPaths, user: string): Promise<number> {
  if (!(await caExists(p)) || !(await readIssued(p)).some((c) => c.user === user)) return 0;
  return (await revokeCerts(p, { serials: [], keyIds: [], users: [user] })).added.length;
}
