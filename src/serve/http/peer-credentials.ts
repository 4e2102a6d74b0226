import type { Socket } from "node:net";
import { run } from "../../adapters/runner.js";

/** Who is at the other end of a Unix socket, as the kernel recorded it when the peer connected. */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

// Linux: SOL_SOCKET and SO_PEERCRED (asm-generic/socket.h), struct ucred { pid_t; uid_t; gid_t }.
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

type GetPeerCred = (fd: number) => PeerCredentials | undefined;

let getPeerCred: Promise<GetPeerCred> | undefined;

/**
 * getsockopt(SO_PEERCRED) through koffi (a maintained FFI that ships its binary in the npm
 * package): Node has no API for it. Loaded on first use, so only `serve` loads it.
 */
async function loadGetPeerCred(): Promise<GetPeerCred> {
  const koffi = (await import("koffi")).default;
  const libc = koffi.load("libc.so.6");
  koffi.struct("nixpool_ucred", { pid: "int32", uid: "uint32", gid: "uint32" });
  const getsockopt = libc.func(
    "int getsockopt(int fd, int level, int name, _Out_ nixpool_ucred *value, _Inout_ uint32 *length)",
  );
  return (fd) => {
    const value: Partial<PeerCredentials> = {};
    const length = [12];
    const rc = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, value, length) as number;
    if (rc !== 0 || length[0] !== 12) return undefined;
    const { pid, uid, gid } = value;
    return pid !== undefined && uid !== undefined && gid !== undefined ? { pid, uid, gid } : undefined;
  };
}

/**
 * The peer's credentials of an accepted Unix socket connection, or undefined when the kernel
 * gives none (not a Unix socket, already closed). The file descriptor is libuv's handle's: Node
 * keeps it there for every connected pipe on Linux.
 */
export async function readPeerCredentials(socket: Socket): Promise<PeerCredentials | undefined> {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) return undefined;
  getPeerCred ??= loadGetPeerCred();
  return (await getPeerCred)(fd);
}

const userNames = new Map<number, Promise<string>>();

/** A user name's uid as the system's user database has it; undefined when there is no such user. */
export async function uidOf(name: string): Promise<number | undefined> {
  return (await accountOf(name))?.uid;
}

/** A user name's uid and primary gid as the system's user database has them; undefined when there is no such user. */
export async function accountOf(name: string): Promise<{ uid: number; gid: number } | undefined> {
  if (!/^[A-Za-z0-9._-]+\$?$/.test(name)) return undefined;
  const r = await run(["getent", "passwd", name], { reject: false, timeout: 5000 });
  const fields = r.exitCode === 0 ? r.stdout.split(":") : [];
  const uid = Number(fields[2] ?? NaN);
  const gid = Number(fields[3] ?? NaN);
  return Number.isInteger(uid) && uid >= 0 && Number.isInteger(gid) && gid >= 0 ? { uid, gid } : undefined;
}

/** A uid's user name as the system's user database (NSS: files, LDAP, …) has it, else "uid:N". */
export function userNameOf(uid: number): Promise<string> {
  let name = userNames.get(uid);
  if (!name) {
    name = run(["getent", "passwd", String(uid)], { reject: false, timeout: 5000 }).then((r) => {
      const field = r.exitCode === 0 ? r.stdout.split(":")[0] : undefined;
      return field && /^[A-Za-z0-9._-]+\$?$/.test(field) ? field : `uid:${uid}`;
    });
    userNames.set(uid, name);
  }
  return name;
}
