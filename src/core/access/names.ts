/** A nixpool user name is also the builder's Unix account name: lower case, like useradd's default rule. */
export const USER_NAME_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;

/** GitHub's rule: 1–39 letters, digits or single inner hyphens. */
const GITHUB_HANDLE_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/;

/** System accounts that must never be handed out as builder users. */
const RESERVED = new Set([
  "root",
  "daemon",
  "bin",
  "sys",
  "sync",
  "games",
  "man",
  "lp",
  "mail",
  "news",
  "uucp",
  "proxy",
  "www-data",
  "backup",
  "list",
  "irc",
  "gnats",
  "nobody",
  "sshd",
  "messagebus",
  "_apt",
  "nixbld",
  "nix",
  "nixpool",
  "admin",
  "operator",
  "halt",
  "shutdown",
]);

/** Why a name or handle is refused, or undefined when it is fine. */
export function checkUserName(name: string): string | undefined {
  if (!USER_NAME_PATTERN.test(name)) {
    return "a user name must start with a lower-case letter or _ and hold only a-z, 0-9, _ and - (at most 32 characters)";
  }
  if (RESERVED.has(name) || /^nixbld\d*$/.test(name) || name.startsWith("systemd-")) {
    return `"${name}" is a system account name and cannot be a builder user`;
  }
  return undefined;
}

/** Why a GitHub handle is refused, or undefined when it is fine. */
export function checkGithubHandle(handle: string): string | undefined {
  return GITHUB_HANDLE_PATTERN.test(handle)
    ? undefined
    : "a GitHub handle holds 1–39 letters, digits or single hyphens, and does not start or end with a hyphen";
}

/** Shows untrusted text safely inside an error message: printable ASCII only, shortened. */
export function quoteUntrusted(text: string, max = 40): string {
  const clean = text.replace(/[^\x20-\x7e]/g, "?");
  return JSON.stringify(clean.length > max ? `${clean.slice(0, max)}…` : clean);
}
