// Kept free of zod/TOML imports: the AuthorizedKeysCommand entry loads this file on every login.
import { configError } from "../errors.js";
import { USER_NAME_PATTERN } from "./names.js";

/** Which Nix remote protocol a restricted key is forced into. */
export type AccessProtocol = "ssh-ng" | "ssh";

/** In STATE/access/sshd/gateway/: every gateway client's lines, for the gateway's one account. */
export const GATEWAY_ALL_FILE = ".all";

/** The forced command for each protocol: the Nix protocol and nothing else. */
export const FORCED_COMMAND: Record<AccessProtocol, string> = {
  "ssh-ng": "nix-daemon --stdio",
  ssh: "nix-store --serve --write",
};

/** One member's entry in the precompiled index: what `access keys` needs, nothing more. */
export interface IndexEntry {
  name: string;
  /** Epoch ms at which access ends, or undefined for never. */
  expiresMs: number | undefined;
  /** "TYPE BASE64" lines, already validated. */
  keys: string[];
  /** May use the gateway (absent in index files of older nixpool: no). */
  gateway?: boolean;
}

const INDEX_MAGIC = "nixpool-access-index 1";

/** Renders a member's index file (one per member; replaced atomically on every change). */
export function renderIndexEntry(e: IndexEntry): string {
  return [
    INDEX_MAGIC,
    `name ${e.name}`,
    `expires ${e.expiresMs === undefined ? "never" : String(e.expiresMs)}`,
    ...(e.gateway ? ["gateway yes"] : []),
    ...e.keys.map((k) => `key ${k}`),
    "",
  ].join("\n");
}

/** Parses an index file; undefined when it is not one (treated as "no keys": fail closed). */
export function parseIndexEntry(text: string): IndexEntry | undefined {
  const lines = text.split("\n");
  if (lines[0] !== INDEX_MAGIC) return undefined;
  let name: string | undefined;
  let expiresMs: number | undefined;
  let sawExpires = false;
  const keys: string[] = [];
  let gateway = false;
  for (const line of lines.slice(1)) {
    if (line === "") continue;
    const sp = line.indexOf(" ");
    const tag = sp < 0 ? line : line.slice(0, sp);
    const rest = sp < 0 ? "" : line.slice(sp + 1);
    if (tag === "name") name = rest;
    else if (tag === "expires") {
      sawExpires = true;
      if (rest !== "never") {
        const n = Number(rest);
        if (!Number.isFinite(n)) return undefined;
        expiresMs = n;
      }
    } else if (tag === "gateway") {
      if (rest !== "yes") return undefined;
      gateway = true;
    } else if (tag === "key") {
      // Re-check the shape: an index line must never smuggle options or a second line.
      if (!/^[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}$/.test(rest)) return undefined;
      keys.push(rest);
    } else return undefined;
  }
  if (name === undefined || !sawExpires) return undefined;
  return { name, expiresMs, keys, ...(gateway ? { gateway } : {}) };
}

/** Whether an index entry still grants access at nowMs (expiry is checked at every login). */
export function isEntryActive(e: Pick<IndexEntry, "expiresMs">, nowMs: number): boolean {
  return e.expiresMs === undefined || nowMs < e.expiresMs;
}

/** The key ID nixpool's CA writes into a certificate: it names the member it was issued to. */
export function renderKeyId(user: string, serial: number): string {
  return `nixpool:${user}:${serial}`;
}

/** The member a nixpool key ID was issued to; undefined for any other key ID. */
export function parseKeyIdUser(keyId: string): string | undefined {
  const user = /^nixpool:(.*):\d+$/.exec(keyId)?.[1];
  return user !== undefined && USER_NAME_PATTERN.test(user) ? user : undefined;
}

/** sshd's expiry-time value in UTC: YYYYMMDDHHMMSSZ. */
export function formatSshTime(ms: number): string {
  return `${new Date(ms).toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;
}

/** authorized_keys lines for a member; nothing once expired. The comment is replaced by nixpool:NAME. */
export function renderAuthorizedLines(
  e: IndexEntry,
  o: { protocol: AccessProtocol; nowMs: number },
): string[] {
  if (!isEntryActive(e, o.nowMs)) return [];
  // restrict: no shell, pty, forwarding or agent; command=: the Nix protocol only; expiry-time:
  // sshd itself refuses the key after the expiry, even from a static file.
  const opts = ["restrict"];
  if (e.expiresMs !== undefined) opts.push(`expiry-time="${formatSshTime(e.expiresMs)}"`);
  opts.push(`command="${FORCED_COMMAND[o.protocol]}"`);
  return e.keys.map((k) => `${opts.join(",")} ${k} nixpool:${e.name}`);
}

/** A word the shell reads as it is. */
const PLAIN_WORD = "[A-Za-z0-9_@%+=:,./-]+";
/** A single-quoted word: anything but a quote, a backslash (sshd's command="…" has no other escaping) or a control character. */
const QUOTED_WORD = "'[^'\"\\\\\x00-\x1f\x7f]+'";
const SAFE_COMMAND = new RegExp(
  `^(?:/[A-Za-z0-9_@%+=:,./-]*|'/[^'"\\\\\x00-\x1f\x7f]*')(?: (?:${PLAIN_WORD}|${QUOTED_WORD}))*$`,
);

/**
 * The forced command that runs `argv` through the shell sshd starts it with: each word as it is,
 * or single-quoted when it holds a space or another character the shell would read (nixpool
 * installed under "/opt/my tools"). A word sshd's command="…" cannot carry (a quote, a
 * backslash, a control character) is refused: KEYS_COMMAND_UNSAFE names it.
 */
export function forcedCommandOf(argv: readonly string[]): string {
  return argv
    .map((w) => {
      if (new RegExp(`^${PLAIN_WORD}$`).test(w)) return w;
      if (new RegExp(`^${QUOTED_WORD}$`).test(`'${w}'`)) return `'${w}'`;
      throw configError(
        "KEYS_COMMAND_UNSAFE",
        `The gateway's forced command cannot carry "${w}": sshd's command="…" has no way to quote a quote, a backslash or a control character in it.`,
        {
          hint: "Install nixpool and keep the state directory under paths without quotes, backslashes or control characters, then run: nixpool access sync",
        },
      );
    })
    .join(" ");
}

/**
 * Whether `command` can stand inside sshd's command="…" and runs what it says: an absolute
 * program, then words the shell reads as they are or single-quoted (forcedCommandOf's), no double
 * quote, backslash or control character anywhere (sshd has no other escaping).
 */
export function isSafeForcedCommand(command: string): boolean {
  return SAFE_COMMAND.test(command);
}

/**
 * A gateway client's authorized_keys lines for the gateway's account: the forced command is the
 * gateway for this member (`GATEWAY --client NAME`), never a shell; none for a member without
 * gateway rights, an expired one, or a command that cannot be quoted safely (fail closed).
 */
export function renderGatewayLines(e: IndexEntry, o: { command: string; nowMs: number }): string[] {
  if (!e.gateway || !isEntryActive(e, o.nowMs) || !isSafeForcedCommand(o.command)) return [];
  const opts = ["restrict"];
  if (e.expiresMs !== undefined) opts.push(`expiry-time="${formatSshTime(e.expiresMs)}"`);
  opts.push(`command="${o.command} --client ${e.name}"`);
  return e.keys.map((k) => `${opts.join(",")} ${k} nixpool:${e.name}`);
}

/**
 * The principals a member's certificates may carry: their own name while active, with sshd's
 * expiry-time, so that sshd itself stops accepting it at the expiry.
 */
export function renderPrincipalLines(e: IndexEntry, nowMs: number): string[] {
  if (!isEntryActive(e, nowMs)) return [];
  return [e.expiresMs === undefined ? e.name : `expiry-time="${formatSshTime(e.expiresMs)}" ${e.name}`];
}

/** What the installed keys command prints for a member, precompiled: keys per protocol, principals. */
export function renderSshdAnswers(
  e: IndexEntry,
  nowMs: number,
  gatewayCommand = "",
): Record<"ssh-ng" | "ssh" | "principals" | "gateway", string> {
  const text = (lines: string[]) => lines.map((l) => `${l}\n`).join("");
  return {
    "ssh-ng": text(renderAuthorizedLines(e, { protocol: "ssh-ng", nowMs })),
    ssh: text(renderAuthorizedLines(e, { protocol: "ssh", nowMs })),
    principals: text(renderPrincipalLines(e, nowMs)),
    gateway: text(renderGatewayLines(e, { command: gatewayCommand, nowMs })),
  };
}

/** A whole authorized_keys file for `access sync --write DIR`, marked as nixpool's own. */
export function renderAuthorizedKeysFile(
  e: IndexEntry,
  o: { protocol: AccessProtocol; nowMs: number },
): string {
  const lines = renderAuthorizedLines(e, o);
  return `${AUTHORIZED_KEYS_MARKER} ${e.name}; do not edit (nixpool access sync --write).\n${lines.map((l) => `${l}\n`).join("")}`;
}

/** First line of every authorized_keys file nixpool writes; only such files are ever removed. */
export const AUTHORIZED_KEYS_MARKER = "# Generated by nixpool for";
