// Used at every SSH login: imports node:fs and two small pure modules only, never the network.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  isEntryActive,
  parseIndexEntry,
  parseKeyIdUser,
  renderAuthorizedLines,
  type AccessProtocol,
} from "../core/access/authorized-keys.js";
import { USER_NAME_PATTERN } from "../core/access/names.js";
import { GATEWAY_ALL_FILE } from "../core/access/keys-command-script.js";

export interface LookupOptions {
  indexDir: string;
  protocol: AccessProtocol;
  nowMs: number;
}

async function readEntry(indexDir: string, user: string) {
  // The name comes from sshd's %u: anything that is not a valid member name has no keys.
  if (!USER_NAME_PATTERN.test(user)) return undefined;
  let text: string;
  try {
    text = await readFile(join(indexDir, user), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  const entry = parseIndexEntry(text);
  return entry?.name === user ? entry : undefined;
}

/**
 * Every gateway client's lines (STATE/access/sshd/gateway/.all, precompiled at each change), for
 * the gateway's account: the same answer as the installed keys command's `--protocol gateway`.
 */
export async function lookupGatewayKeys(user: string, o: { sshdDir: string }): Promise<string[]> {
  if (!USER_NAME_PATTERN.test(user)) return [];
  let text: string;
  try {
    text = await readFile(join(o.sshdDir, "gateway", GATEWAY_ALL_FILE), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  return text.split("\n").filter((l) => l !== "");
}

/** The restricted authorized_keys lines for a user from the local index; none when unlisted or expired. */
export async function lookupAuthorizedKeys(user: string, o: LookupOptions): Promise<string[]> {
  const entry = await readEntry(o.indexDir, user);
  return entry ? renderAuthorizedLines(entry, { protocol: o.protocol, nowMs: o.nowMs }) : [];
}

/**
 * The principals a certificate may carry to log in as user: the user's own name while listed and
 * active. Given the certificate's key ID (sshd's %i), none unless it was issued to this very user,
 * so a certificate naming a later member as an extra principal cannot log in as them.
 */
export async function lookupPrincipals(
  user: string,
  o: Omit<LookupOptions, "protocol"> & { keyId?: string | undefined },
): Promise<string[]> {
  if (o.keyId !== undefined && parseKeyIdUser(o.keyId) !== user) return [];
  const entry = await readEntry(o.indexDir, user);
  return entry && isEntryActive(entry, o.nowMs) ? [entry.name] : [];
}
