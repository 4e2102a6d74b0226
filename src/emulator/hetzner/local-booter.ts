import { readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../adapters/runner.js";
import {
  copyTree,
  hostExecArgv,
  setLinkUp,
  startHost,
  stopHost,
  treeBytes,
} from "../../providers/local/host.js";
import { readHostRecord } from "../../providers/local/records.js";
import type { ServerBooter } from "./booter.js";

/** nix.conf keys a server's user_data may not override on a host that shares this kernel and has no network. */
const RESERVED_NIX_KEYS = new Set(["build-users-group", "substituters", "trusted-substituters", "sandbox"]);

/** Keeps the user_data's nix.conf lines except the reserved keys. */
export function filterNixConf(text: string | undefined): string {
  if (!text) return "";
  return text
    .split("\n")
    .filter((l) => !RESERVED_NIX_KEYS.has((l.split("=")[0] ?? "").trim()))
    .join("\n");
}

/** Debian's nix-bin: every nix-* command is a link to this one binary. */
const NIX_BINARY = "/usr/bin/nix";

/** What a command of Nix's finds while cloud-init has not installed it: the shell's "not found". */
const NIX_NOT_INSTALLED = [
  "#!/bin/sh",
  'echo "sh: 1: ${0##*/}: not found (cloud-init is still installing nix-bin)" >&2',
  "exit 127",
  "",
].join("\n");

/**
 * Boots each emulated server as a local pool builder host under DIR/server-ID: the host key
 * and authorized keys come from the server's user_data and API SSH keys. A snapshot copies the
 * host's Nix directory (store and database) to DIR/image-ID/nix; a server created from it
 * starts with a copy of that. While cloud-init "installs" Nix, a stand-in that exits 127 is
 * bind-mounted over the Nix binary in the host's own mount namespace (nothing else sees it).
 */
export function createLocalBooter(dir: string): ServerBooter {
  return async (req) => {
    const rec = await startHost({
      name: `hcloud-${req.serverId}`,
      dir: join(dir, `server-${req.serverId}`),
      jobs: Math.max(1, req.cores),
      authorizedKeys: req.authorizedKeys,
      nixConf: filterNixConf(req.nixConf),
      ...(req.hostKeyPrivate ? { hostKeyPrivate: req.hostKeyPrivate } : {}),
      ...(req.disk ? { seedStore: req.disk.path } : {}),
    });
    return {
      address: rec.address,
      setReachable: (up) => setLinkUp(rec, up),
      stop: () => stopHost(rec),
      setNixInstalled: async (installed) => {
        if (!installed) {
          const standIn = join(rec.dir, "nix-not-installed");
          await writeFile(standIn, NIX_NOT_INSTALLED, { mode: 0o755 });
          await run(hostExecArgv(rec, ["mount", "--bind", standIn, NIX_BINARY]), { timeout: 30_000 });
        } else {
          await run(hostExecArgv(rec, ["umount", NIX_BINARY]), { timeout: 30_000 });
        }
      },
      snapshot: async (imageId) => {
        const imageDir = join(dir, `image-${imageId}`);
        const path = join(imageDir, "nix");
        await copyTree(rec.storeDir, path);
        return {
          path,
          bytes: await treeBytes(path),
          remove: () => rm(imageDir, { recursive: true, force: true }),
        };
      },
    };
  };
}

/** Stops machines a previous emulator in DIR left running (it was killed); returns how many. */
export async function stopStaleHosts(dir: string): Promise<number> {
  let stopped = 0;
  for (const d of await readdir(dir).catch(() => [] as string[])) {
    if (!d.startsWith("server-")) continue;
    const rec = await readHostRecord(join(dir, d));
    if (rec) {
      await stopHost(rec);
      stopped++;
    }
  }
  return stopped;
}
