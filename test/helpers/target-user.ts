import { chmod, chown, copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/adapters/runner.js";
import { hostExecArgv } from "../../src/providers/local/host.js";
import type { HostRecord } from "../../src/providers/local/records.js";
import { waitFor } from "../../src/adapters/wait-for.js";
import { waitForSsh } from "./processes.js";

/** A Unix account to create on a pool host; `sudo` gives it a NOPASSWD rule of its own. */
export interface TargetUserSpec {
  name: string;
  sudo: boolean;
}

export interface TargetUsers {
  /** The sudoers rule file of each user with sudo, as the host sees it (/etc/sudoers.d/NAME). */
  rules: Map<string, string>;
  /** Unmounts the host's private /etc files and removes them; safe to call twice. */
  remove: () => Promise<void>;
}

const FIRST_UID = 64_000;
const ETC_FILES = ["passwd", "group", "shadow"] as const;

/**
 * Creates non-root users on one pool host, usable as deploy target users: they exist only inside
 * the host's mount namespace (private /etc/passwd, group, shadow bind-mounted there), log in with
 * `authorizedKeys` (in their own ~/.ssh, named by a Match block added to the host's sshd_config
 * until `remove`), and those with `sudo` get `NAME ALL=(ALL:ALL) NOPASSWD: ALL` in the host's /etc/sudoers.d (a private copy of
 * this machine's, each rule checked with visudo -cf). This machine's /etc is never touched.
 */
export async function addTargetUsers(
  host: HostRecord,
  users: readonly TargetUserSpec[],
  authorizedKeys: readonly string[],
): Promise<TargetUsers> {
  const dir = await mkdtemp(join(tmpdir(), "nixpool-target-users-"));
  // The users' homes live below: traversable, the files themselves keep their modes.
  await chmod(dir, 0o755);
  const mounted: string[] = [];
  const originalSshdConfig = await readFile(host.sshdConfigPath, "utf8");
  let reloaded = false;
  const remove = async () => {
    if (reloaded) {
      reloaded = false;
      await writeFile(host.sshdConfigPath, originalSshdConfig);
      await reloadSshd(host);
    }
    for (const target of mounted.splice(0).reverse())
      await run(hostExecArgv(host, ["umount", target]), { reject: false });
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const etc: Record<(typeof ETC_FILES)[number], string> = {
      passwd: await readFile("/etc/passwd", "utf8"),
      group: await readFile("/etc/group", "utf8"),
      shadow: await readFile("/etc/shadow", "utf8"),
    };
    const sudoersDir = join(dir, "sudoers.d");
    await mkdir(sudoersDir, { mode: 0o755 });
    for (const f of await readdir("/etc/sudoers.d"))
      await copyFile(join("/etc/sudoers.d", f), join(sudoersDir, f));
    const rules = new Map<string, string>();
    for (const [i, u] of users.entries()) {
      if (!/^[a-z_][a-z0-9_-]{0,30}$/.test(u.name)) throw new Error(`bad user name ${u.name}`);
      const uid = FIRST_UID + i;
      const home = join(dir, "home", u.name);
      // sshd reads a user's keys as that user: the pool's authorized_keys (root's, 0700 directory) is
      // out of its reach, so each user gets the keys in a file of their own.
      await mkdir(join(dir, "home"), { recursive: true, mode: 0o755 });
      await mkdir(join(home, ".ssh"), { recursive: true, mode: 0o700 });
      await writeFile(join(home, ".ssh", "authorized_keys"), authorizedKeys.map((k) => `${k}\n`).join(""), {
        mode: 0o600,
      });
      for (const p of [home, join(home, ".ssh"), join(home, ".ssh", "authorized_keys")])
        await chown(p, uid, uid);
      etc.passwd += `${u.name}:x:${uid}:${uid}:nixpool deploy test:${home}:/bin/sh\n`;
      etc.group += `${u.name}:x:${uid}:\n`;
      // "*": no password, but not locked (sshd refuses "!" accounts when UsePAM is off).
      etc.shadow += `${u.name}:*:19000:0:99999:7:::\n`;
      if (u.sudo) {
        const rule = join(sudoersDir, `nixpool-${u.name}`);
        await writeFile(rule, `${u.name} ALL=(ALL:ALL) NOPASSWD: ALL\n`, { mode: 0o440 });
        await run(["visudo", "-cf", rule]);
        rules.set(u.name, `/etc/sudoers.d/nixpool-${u.name}`);
      }
    }
    for (const f of ETC_FILES) {
      await writeFile(join(dir, f), etc[f], { mode: f === "shadow" ? 0o640 : 0o644 });
      await run(hostExecArgv(host, ["mount", "--bind", join(dir, f), `/etc/${f}`]));
      mounted.push(`/etc/${f}`);
    }
    await run(hostExecArgv(host, ["mount", "--bind", sudoersDir, "/etc/sudoers.d"]));
    mounted.push("/etc/sudoers.d");
    const names = users.map((u) => u.name).join(",");
    await writeFile(
      host.sshdConfigPath,
      `${originalSshdConfig}\nMatch User ${names}\n  AuthorizedKeysFile %h/.ssh/authorized_keys\n`,
    );
    reloaded = true;
    await reloadSshd(host);
    return { rules, remove };
  } catch (e) {
    await remove();
    throw e;
  }
}

/** Makes the host's sshd read its config again: SIGHUP, then its log says it listens anew and it answers. */
async function reloadSshd(host: HostRecord): Promise<void> {
  const listening = async () =>
    ((await readFile(host.sshdLogPath, "utf8").catch(() => "")).match(/^Server listening on /gm) ?? [])
      .length;
  const before = await listening();
  process.kill(host.sshdPid, "SIGHUP");
  if (!(await waitFor(async () => (await listening()) > before, { timeoutMs: 20_000 })))
    throw new Error(`sshd of ${host.name} did not restart after SIGHUP`);
  await waitForSsh(host.address);
}
