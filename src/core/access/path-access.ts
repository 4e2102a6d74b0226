// Whether an account can reach a file, and whether sshd accepts a command path, from the stat
// data of every directory on the way (pure: the adapter stats, this decides).

/** One path component as stat(2) reports it. */
export interface PathNode {
  path: string;
  uid: number;
  gid: number;
  /** st_mode's permission bits (e.g. 0o755). */
  mode: number;
  isDirectory: boolean;
}

/** An account as the kernel checks it: its uid, primary and supplementary groups. */
export interface Account {
  name: string;
  uid: number;
  gids: readonly number[];
}

/** What an account lacks on one path component, and the command that grants it. */
export interface AccessBlocker {
  path: string;
  mode: number;
  /** "search" a directory, or "read"/"execute" the file itself. */
  lacks: "search" | "read" | "execute";
  fix: string;
}

const octal = (mode: number) => `0${(mode & 0o7777).toString(8)}`;

/** The permission bits (rwx as 4/2/1) that apply to the account on this node. */
function bitsFor(node: PathNode, account: Account): number {
  if (account.uid === 0) return 7;
  if (node.uid === account.uid) return (node.mode >> 6) & 7;
  if (account.gids.includes(node.gid)) return (node.mode >> 3) & 7;
  return node.mode & 7;
}

/** The chmod that grants a permission to the account's class on this node. */
function chmodFix(node: PathNode, account: Account, bit: "x" | "r" | "rx"): string {
  const who = node.uid === account.uid ? "u" : account.gids.includes(node.gid) ? "g" : "o";
  return `chmod ${who}+${bit} ${node.path}`;
}

/**
 * The first component of CHAIN (from / down to the file) that ACCOUNT cannot pass: a directory it
 * cannot search, or the file itself without read (and, for a command, execute) permission.
 */
export function findAccessBlocker(
  chain: readonly PathNode[],
  account: Account,
  need: { read: boolean; execute: boolean },
): AccessBlocker | undefined {
  const last = chain.length - 1;
  for (const [i, node] of chain.entries()) {
    const bits = bitsFor(node, account);
    if (i < last || node.isDirectory) {
      if ((bits & 1) === 0)
        return { path: node.path, mode: node.mode, lacks: "search", fix: chmodFix(node, account, "x") };
      continue;
    }
    // Root may read anything, but executes only what has some execute bit.
    const canExec = account.uid === 0 ? (node.mode & 0o111) !== 0 : (bits & 1) !== 0;
    const wantRead = need.read && (bits & 4) === 0;
    const wantExec = need.execute && !canExec;
    if (wantRead || wantExec) {
      const bit = need.read && need.execute ? "rx" : need.read ? "r" : "x";
      return {
        path: node.path,
        mode: node.mode,
        lacks: wantRead ? "read" : "execute",
        fix: chmodFix(node, account, bit),
      };
    }
  }
  return undefined;
}

/** Why sshd refuses a command path, if it does: one component not owned by root or writable by others. */
export interface UnsafeComponent {
  path: string;
  reason: string;
  /** The command that fixes it; none for a shared sticky directory such as /tmp. */
  fix: string | undefined;
}

/**
 * sshd runs an AuthorizedKeysCommand only if the file and every directory above it are owned by
 * root and writable by no group or other user (OpenSSH's safe_path()).
 */
export function findUnsafeForSshd(chain: readonly PathNode[]): UnsafeComponent | undefined {
  for (const node of [...chain].reverse()) {
    if (node.uid !== 0)
      return {
        path: node.path,
        reason: `is owned by uid ${node.uid}, not root`,
        fix: `chown root ${node.path}`,
      };
    if ((node.mode & 0o022) !== 0)
      return {
        path: node.path,
        reason: `is writable by its group or others (mode ${octal(node.mode)})`,
        // A sticky directory (/tmp) is meant to be shared: the fix is to stay out of it.
        fix: (node.mode & 0o1000) !== 0 ? undefined : `chmod go-w ${node.path}`,
      };
  }
  return undefined;
}

/** The directories from / down to PATH (absolute, normalised), PATH last. */
export function listPathComponents(path: string): string[] {
  const parts = path.split("/").filter((p) => p !== "");
  return ["/", ...parts.map((_, i) => `/${parts.slice(0, i + 1).join("/")}`)];
}

/** A mode for messages: 0755. */
export const formatMode = octal;
