import { stringify, TomlDate } from "smol-toml";
import { parseTomlDocument } from "../toml.js";
import { z } from "zod";
import { configError } from "../errors.js";
import { KeyLineError, parseKeyLine, formatKey } from "../public-key.js";
import { checkGithubHandle, checkUserName, quoteUntrusted } from "./names.js";

/** One member of a shared builder, as listed in users.toml. */
export interface AccessUser {
  name: string;
  github: string | undefined;
  /** Explicit public key lines "TYPE BASE64 [COMMENT]", validated. */
  keys: string[];
  /** Joins Nix's trusted-users: effectively root on the builder's store. */
  trusted: boolean;
  /** May vouch for new members (trusted members may vouch too). */
  canVouch: boolean;
  /** May use the gateway (`nixpool gateway`): the whole pool as one builder (docs/gateway.md). */
  gateway: boolean;
  /** The member who vouched for this one; absent only for the first member. */
  vouchedBy: string | undefined;
  /** ISO instant at which access ends; absent means no expiry. */
  expires: string | undefined;
  /** ISO instant the member was added. */
  added: string | undefined;
}

export interface UsersFile {
  users: AccessUser[];
}

const isoInstant = z.union([z.string(), z.instanceof(TomlDate), z.date()]).transform((v, ctx) => {
  const ms = parseInstant(v instanceof Date ? v.toISOString() : v);
  if (ms === undefined) {
    ctx.addIssue({ code: "custom", message: "must be a date (2026-12-31) or an ISO date-time" });
    return z.NEVER;
  }
  return new Date(ms).toISOString();
});

const userSchema = z
  .object({
    github: z.string().optional(),
    keys: z.array(z.string()).default([]),
    trusted: z.boolean().default(false),
    canVouch: z.boolean().default(false),
    gateway: z.boolean().default(false),
    vouchedBy: z.string().optional(),
    expires: isoInstant.optional(),
    added: isoInstant.optional(),
  })
  .strict();

const fileSchema = z
  .object({
    version: z.literal(1).default(1),
    users: z.record(z.string(), userSchema).default({}),
  })
  .strict();

/** Parses "2026-12-31" (00:00 UTC that day) or an ISO date-time with an offset; undefined when invalid. */
export function parseInstant(text: string): number | undefined {
  const s = text.trim();
  const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(s);
  if (!dateOnly && !/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(s))
    return undefined;
  const ms = Date.parse(dateOnly ? `${s}T00:00:00Z` : s);
  return Number.isNaN(ms) ? undefined : ms;
}

/** The GitHub handles the members use, lower-cased (GitHub's are case-insensitive), sorted, once each. */
export function listGithubHandles(f: UsersFile): string[] {
  return [...new Set(f.users.flatMap((u) => (u.github ? [u.github.toLowerCase()] : [])))].sort();
}

/** Whether the member may log in at `nowMs`. */
export function isActive(u: Pick<AccessUser, "expires">, nowMs: number): boolean {
  return u.expires === undefined || nowMs < Date.parse(u.expires);
}

/** Whether `member` may vouch for a newcomer at `nowMs`: active, and marked canVouch or trusted. */
export function canVouch(member: AccessUser | undefined, nowMs: number): boolean {
  return member !== undefined && isActive(member, nowMs) && (member.canVouch || member.trusted);
}

function invalid(file: string, problems: string[]) {
  return configError(
    "USERS_INVALID",
    `${file}: ${problems.length === 1 ? problems[0] : `${problems.length} problems:\n  ${problems.join("\n  ")}`}`,
    {
      hint: `Fix ${file} (see docs/access-control.md), or change it only through nixpool access add/remove.`,
      details: { file, problems },
    },
  );
}

/** Problems with one member's fields (name, handle, keys, voucher), each naming the path. */
function checkUser(u: AccessUser): string[] {
  const at = `users.${u.name}`;
  const problems: string[] = [];
  const nameProblem = checkUserName(u.name);
  if (nameProblem) problems.push(`users.${quoteUntrusted(u.name)}: ${nameProblem}`);
  if (u.github !== undefined) {
    const p = checkGithubHandle(u.github);
    if (p) problems.push(`${at}.github ${quoteUntrusted(u.github)}: ${p}`);
  }
  u.keys.forEach((k, i) => {
    try {
      parseKeyLine(k);
    } catch (e) {
      if (!(e instanceof KeyLineError)) throw e;
      problems.push(`${at}.keys[${i}]: ${e.message}`);
    }
  });
  if (u.vouchedBy !== undefined && checkUserName(u.vouchedBy) !== undefined) {
    problems.push(`${at}.vouchedBy ${quoteUntrusted(u.vouchedBy)}: is not a valid member name`);
  }
  return problems;
}

/** Parses and validates users.toml text; throws USERS_SYNTAX / USERS_INVALID naming the file and path. */
export function parseUsersFile(text: string, file: string): UsersFile {
  const raw = parseTomlDocument(text, file, "USERS_SYNTAX");
  const result = fileSchema.safeParse(raw);
  if (!result.success) {
    throw invalid(
      file,
      result.error.issues.map((i) => `${i.path.map(String).join(".")}: ${i.message}`),
    );
  }
  const users: AccessUser[] = Object.entries(result.data.users).map(([name, u]) => ({
    name,
    github: u.github,
    keys: u.keys,
    trusted: u.trusted,
    canVouch: u.canVouch,
    gateway: u.gateway,
    vouchedBy: u.vouchedBy,
    expires: u.expires,
    added: u.added,
  }));
  const problems = users.flatMap(checkUser);
  if (problems.length > 0) throw invalid(file, problems);
  users.sort((a, b) => a.name.localeCompare(b.name));
  return { users };
}

/** Renders users.toml (stable order, defaults omitted). */
export function renderUsersFile(f: UsersFile): string {
  const users: Record<string, Record<string, unknown>> = {};
  for (const u of [...f.users].sort((a, b) => a.name.localeCompare(b.name))) {
    const entry: Record<string, unknown> = {};
    if (u.github !== undefined) entry["github"] = u.github;
    if (u.keys.length > 0) entry["keys"] = u.keys;
    if (u.trusted) entry["trusted"] = true;
    if (u.canVouch) entry["canVouch"] = true;
    if (u.gateway) entry["gateway"] = true;
    if (u.vouchedBy !== undefined) entry["vouchedBy"] = u.vouchedBy;
    if (u.expires !== undefined) entry["expires"] = u.expires;
    if (u.added !== undefined) entry["added"] = u.added;
    users[u.name] = entry;
  }
  const header =
    "# Members of this shared builder, managed by nixpool access add/remove (docs/access-control.md).\n";
  return `${header}${stringify({ version: 1, users })}\n`;
}

export interface AddUserInput {
  name: string;
  github?: string | undefined;
  keys?: readonly string[] | undefined;
  trusted?: boolean | undefined;
  canVouch?: boolean | undefined;
  gateway?: boolean | undefined;
  vouchedBy?: string | undefined;
  expires?: string | undefined;
}

/**
 * Plans the admission of a new member: validates every field and applies the vouching rule
 * (every member but the first needs an active voucher who canVouch; a trusted newcomer, a trusted voucher).
 */
export function planAddUser(f: UsersFile, input: AddUserInput, nowMs: number): UsersFile {
  const fail = (message: string, hint: string) =>
    configError("USER_REJECTED", message, { hint, details: { user: input.name.slice(0, 40) } });
  const nameProblem = checkUserName(input.name);
  if (nameProblem)
    throw fail(
      `User name ${quoteUntrusted(input.name)} is refused: ${nameProblem}.`,
      "Choose a name such as alice or build_bot.",
    );
  if (f.users.some((u) => u.name === input.name)) {
    throw fail(
      `User "${input.name}" is already listed.`,
      `Remove it first: nixpool access remove ${input.name}`,
    );
  }
  if (input.github !== undefined) {
    const p = checkGithubHandle(input.github);
    if (p)
      throw fail(
        `GitHub handle ${quoteUntrusted(input.github)} for "${input.name}" is refused: ${p}.`,
        "Give the handle as it appears in https://github.com/HANDLE.",
      );
  }
  const keys: string[] = [];
  for (const [i, line] of (input.keys ?? []).entries()) {
    try {
      const k = parseKeyLine(line);
      keys.push(k.comment ? `${formatKey(k)} ${k.comment}` : formatKey(k));
    } catch (e) {
      if (!(e instanceof KeyLineError)) throw e;
      throw fail(
        `Key ${i + 1} for "${input.name}" is refused: ${e.message}.`,
        'Pass the public key line only, e.g. --key "$(cat ~/.ssh/id_ed25519.pub)".',
      );
    }
  }
  let expires: string | undefined;
  if (input.expires !== undefined) {
    const ms = parseInstant(input.expires);
    if (ms === undefined)
      throw fail(
        `Expiry ${quoteUntrusted(input.expires)} for "${input.name}" is not a date.`,
        "Use 2026-12-31 or 2026-12-31T18:00:00Z.",
      );
    if (ms <= nowMs)
      throw fail(
        `Expiry ${input.expires} for "${input.name}" is already past.`,
        "Give a date in the future.",
      );
    expires = new Date(ms).toISOString();
  }
  // Only the very first member comes in unvouched; after that, admission is always through a
  // member who may vouch (if none may any more, the operator grants canVouch in users.toml).
  if (input.vouchedBy === undefined) {
    if (f.users.length > 0)
      throw fail(
        `User "${input.name}" needs a member to vouch for them.`,
        f.users.some((u) => canVouch(u, nowMs))
          ? "Add --vouched-by MEMBER (a trusted member or one added with --can-vouch)."
          : `No active member may vouch: set canVouch = true for one in the users file, then add --vouched-by MEMBER.`,
      );
  } else {
    const voucher = f.users.find((u) => u.name === input.vouchedBy);
    if (!voucher)
      throw fail(
        `Voucher ${quoteUntrusted(input.vouchedBy)} for "${input.name}" is not a member.`,
        "List the members with: nixpool access list",
      );
    if (!canVouch(voucher, nowMs)) {
      throw fail(
        `Member "${voucher.name}" may not vouch for "${input.name}" (not allowed to vouch, or expired).`,
        `Ask a member who may vouch (trusted, or added with --can-vouch); see: nixpool access list`,
      );
    }
    // trusted-users is root on the store: only a trusted member can hand that out.
    if (input.trusted && !voucher.trusted) {
      throw fail(
        `Member "${voucher.name}" is not trusted, so cannot vouch for "${input.name}" as trusted.`,
        "Ask a trusted member to vouch (see: nixpool access list), or add them without --trusted.",
      );
    }
  }
  const user: AccessUser = {
    name: input.name,
    github: input.github,
    keys,
    trusted: input.trusted ?? false,
    canVouch: input.canVouch ?? false,
    gateway: input.gateway ?? false,
    vouchedBy: input.vouchedBy,
    expires,
    added: new Date(nowMs).toISOString(),
  };
  return { users: [...f.users, user].sort((a, b) => a.name.localeCompare(b.name)) };
}

/** Plans removing a member; the members they vouched for stay (their admission already happened). */
export function planRemoveUser(f: UsersFile, name: string): UsersFile {
  if (!f.users.some((u) => u.name === name)) {
    throw configError("USER_UNKNOWN", `User ${quoteUntrusted(name)} is not listed.`, {
      hint: "List the members with: nixpool access list",
    });
  }
  return { users: f.users.filter((u) => u.name !== name) };
}
