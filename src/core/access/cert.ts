import { configError } from "../errors.js";
import { FORCED_COMMAND, formatSshTime, type AccessProtocol } from "./authorized-keys.js";
import { parseDuration } from "../duration.js";
import { checkUserName, quoteUntrusted } from "./names.js";
import { parseInstant } from "./users.js";

/** Default certificate window: from 5 minutes ago (clock skew) to one hour from now. */
export const DEFAULT_VALIDITY = "-5m:+1h";
/** Longest window nixpool signs; short-lived certificates are the point. */
export const MAX_VALIDITY_MS = 30 * 86_400_000;

export interface Validity {
  fromMs: number;
  toMs: number;
}

function parseTimeTerm(term: string, nowMs: number): number | undefined {
  const rel = /^([+-])(.+)$/.exec(term);
  if (rel) {
    const d = parseDuration(rel[2] ?? "");
    return d === undefined ? undefined : rel[1] === "+" ? nowMs + d : nowMs - d;
  }
  // A bare duration counts forward from now: "--validity 10m" is "+10m".
  const forward = parseDuration(term);
  if (forward !== undefined) return nowMs + forward;
  return parseInstant(term);
}

/** Parses "[START:]END", each "+8h"/"-5m"/"10m" (from now) or an ISO date-time; START defaults to 5 minutes ago. */
export function parseValidity(spec: string, nowMs: number): Validity {
  const bad = (why: string) =>
    configError("CERT_VALIDITY_INVALID", `Validity ${quoteUntrusted(spec)} ${why}.`, {
      hint: "Use e.g. --validity +8h, --validity -5m:+1h or --validity 2026-12-01T08:00:00Z:2026-12-01T18:00:00Z.",
    });
  // ISO times contain ':' too; split at the ':' that starts a term (+, -, or a 4-digit year).
  const m = /^(.+?):([+-].+|\d{4}-.+)$/.exec(spec);
  const [startText, endText] = m ? [m[1] ?? "", m[2] ?? ""] : ["-5m", spec];
  const fromMs = parseTimeTerm(startText, nowMs);
  const toMs = parseTimeTerm(endText, nowMs);
  if (fromMs === undefined || toMs === undefined) throw bad("is not understood");
  if (toMs <= fromMs) throw bad("ends before it starts");
  if (toMs - fromMs > MAX_VALIDITY_MS) throw bad(`is longer than ${MAX_VALIDITY_MS / 86_400_000} days`);
  return { fromMs, toMs };
}

/** Principals for a certificate: valid user names, defaulting to the user's own. */
export function parsePrincipals(text: string | undefined, user: string): string[] {
  const list = (text ?? user)
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  for (const p of list) {
    const problem = checkUserName(p);
    if (problem) {
      throw configError("CERT_PRINCIPAL_INVALID", `Principal ${quoteUntrusted(p)} is refused: ${problem}.`, {
        hint: "Principals are builder user names, comma-separated: --principals alice",
      });
    }
  }
  if (list.length === 0)
    throw configError("CERT_PRINCIPAL_INVALID", "No principal was given.", {
      hint: `Use --principals ${user}`,
    });
  return [...new Set(list)];
}

/**
 * What a certificate is for: `builder` forces the Nix protocol (nothing else runs); `deploy`
 * lets nixpool run a deploy's commands (sudo -n, the activation) with no pty and no forwarding
 * but the agent's (pam-ussh on the target reads the certificate from the forwarded agent).
 */
export type CertUse = "builder" | "deploy";
export const CERT_USES: readonly CertUse[] = ["builder", "deploy"];

export interface SignArgvInput {
  caKeyFile: string;
  publicKeyFile: string;
  keyId: string;
  principals: readonly string[];
  validity: Validity;
  serial: number;
  protocol: AccessProtocol;
  /** Default "builder". */
  use?: CertUse;
}

/**
 * The ssh-keygen argv that signs a user certificate: always a key ID, a serial, a window and
 * "clear" (no pty, no forwarding); a builder certificate also forces the Nix protocol.
 */
export function renderSignArgv(i: SignArgvInput): string[] {
  return [
    "ssh-keygen",
    "-q",
    "-s",
    i.caKeyFile,
    "-I",
    i.keyId,
    "-n",
    i.principals.join(","),
    "-V",
    `${formatSshTime(i.validity.fromMs)}:${formatSshTime(i.validity.toMs)}`,
    "-z",
    String(i.serial),
    "-O",
    "clear",
    // A deploy certificate may carry nixpool's own agent to the target: pam-ussh reads it there.
    ...((i.use ?? "builder") === "builder"
      ? ["-O", `force-command=${FORCED_COMMAND[i.protocol]}`]
      : ["-O", "permit-agent-forwarding"]),
    i.publicKeyFile,
  ];
}

/** A revocation recorded in the CA's ledger. */
export type Revocation = { serial: number } | { keyId: string };

/** Whether two revocations name the same thing. */
export function isSameRevocation(a: Revocation, b: Revocation): boolean {
  return "serial" in a ? "serial" in b && a.serial === b.serial : "keyId" in b && a.keyId === b.keyId;
}

/** Whether a certificate is revoked, by its serial or its key ID. */
export function isCertRevoked(
  revocations: readonly Revocation[],
  c: { serial: number; keyId: string },
): boolean {
  return revocations.some(
    (r) => isSameRevocation(r, { serial: c.serial }) || isSameRevocation(r, { keyId: c.keyId }),
  );
}

/** The ssh-keygen -k spec file for the revocations (serials of this CA, and key IDs). */
export function renderKrlSpec(revocations: readonly Revocation[]): string {
  return revocations
    .map((r) => ("serial" in r ? `serial: ${r.serial}` : `id: ${r.keyId}`))
    .map((l) => `${l}\n`)
    .join("");
}
