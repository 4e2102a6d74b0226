// Installing the keys command where sshd's command user can run it, and checking that it can:
// sshd refuses a command path that is not root's, and a command or state directory its
// unprivileged user cannot reach refuses every login with nothing but a line in sshd's log.
import { chmod, chown, mkdir, realpath, stat } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import { writeFileAtomic } from "../adapters/fs.js";
import { run } from "../adapters/runner.js";
import {
  findAccessBlocker,
  findUnsafeForSshd,
  formatMode,
  listPathComponents,
  type Account,
  type PathNode,
} from "../core/access/path-access.js";
import {
  DEFAULT_KEYS_COMMAND_PREFIX,
  KEYS_COMMAND_NAME,
  renderKeysCommandScript,
  type SshdAnswerKind,
} from "../core/access/keys-command-script.js";
import { configError, NixpoolError } from "../core/errors.js";
import type { AccessPaths } from "./paths.js";

/** The installed keys command under PREFIX. */
export function keysCommandPath(prefix = DEFAULT_KEYS_COMMAND_PREFIX): string {
  return join(prefix, KEYS_COMMAND_NAME);
}

/** stat(2) of every component of PATH's real path, / first; undefined when PATH does not exist. */
async function statChain(path: string): Promise<PathNode[] | undefined> {
  const real = await realpath(path).catch(() => undefined);
  if (real === undefined) return undefined;
  return Promise.all(
    listPathComponents(real).map(async (p) => {
      const s = await stat(p);
      return { path: p, uid: s.uid, gid: s.gid, mode: s.mode & 0o7777, isDirectory: s.isDirectory() };
    }),
  );
}

/** The uid and groups of a local account, as sshd will run the command. */
export async function lookupAccount(name: string): Promise<Account> {
  const [uid, gids] = await Promise.all([
    run(["id", "-u", "--", name], { reject: false, timeout: 5000 }),
    run(["id", "-G", "--", name], { reject: false, timeout: 5000 }),
  ]);
  if (uid.exitCode !== 0 || gids.exitCode !== 0) {
    throw configError("COMMAND_USER_UNKNOWN", `The account ${name} does not exist on this machine.`, {
      hint: "Give sshd an existing unprivileged account: --command-user nobody (or a dedicated one).",
    });
  }
  return { name, uid: Number(uid.stdout.trim()), gids: gids.stdout.trim().split(/\s+/).map(Number) };
}

/** What sshd-config and doctor check: the command, its user, the state directory and the answers read. */
export interface KeysCommandSetup {
  command: string;
  commandUser: string;
  paths: Pick<AccessPaths, "stateDir" | "sshdDir">;
  kinds: readonly SshdAnswerKind[];
}

/**
 * Every reason sshd would refuse logins with this setup: the command missing, not root's, or
 * not executable by the command user; a precompiled answers directory that user cannot reach.
 * Each is an error naming the path, with the command that fixes it.
 */
export async function checkKeysCommandSetup(s: KeysCommandSetup): Promise<NixpoolError[]> {
  const account = await lookupAccount(s.commandUser);
  const problems: NixpoolError[] = [];
  const install = `sudo nixpool access install-keys-command --prefix ${DEFAULT_KEYS_COMMAND_PREFIX}`;
  const command = await statChain(s.command);
  if (!command) {
    problems.push(
      configError("KEYS_COMMAND_MISSING", `The keys command ${s.command} does not exist.`, {
        hint: `Install it: ${install} (or pass --keys-command PATH).`,
      }),
    );
  } else {
    const unsafe = findUnsafeForSshd(command);
    if (unsafe) {
      problems.push(
        configError(
          "KEYS_COMMAND_UNSAFE",
          `sshd refuses the keys command ${s.command}: ${unsafe.path} ${unsafe.reason}.`,
          {
            hint: `${unsafe.fix ? `Run: ${unsafe.fix}; or install` : "Install"} a copy where only root writes: ${install}`,
          },
        ),
      );
    }
    const blocked = findAccessBlocker(command, account, { read: true, execute: true });
    if (blocked) {
      problems.push(
        configError(
          "KEYS_COMMAND_UNREACHABLE",
          `${account.name} cannot ${blocked.lacks} ${blocked.path} (mode ${formatMode(blocked.mode)}), so sshd cannot run the keys command ${s.command} and refuses every login.`,
          { hint: `Install a copy outside it: ${install}; or run: ${blocked.fix}` },
        ),
      );
    }
  }
  for (const kind of s.kinds) {
    const dir = join(s.paths.sshdDir, kind);
    const chain = await statChain(dir);
    if (!chain) {
      problems.push(
        configError("ACCESS_INDEX_MISSING", `The keys directory ${dir} does not exist.`, {
          hint: "Write it: nixpool access sync",
        }),
      );
      continue;
    }
    const blocked = findAccessBlocker(chain, account, { read: false, execute: false });
    if (blocked) {
      problems.push(
        configError(
          "ACCESS_INDEX_UNREACHABLE",
          `${account.name} cannot search ${blocked.path} (mode ${formatMode(blocked.mode)}), so the keys command cannot read ${dir} and sshd refuses every login.`,
          {
            hint: `Run: ${blocked.fix}; or keep the state directory where ${account.name} can pass (e.g. --state-dir /var/lib/nixpool).`,
          },
        ),
      );
    }
  }
  return problems;
}

/**
 * Installs the keys command as PREFIX/keys-command, owned by root, mode 0755, after checking
 * that sshd will accept PREFIX (root's, not group- or world-writable all the way up) and that
 * the command user can run it. Returns its path and whether it changed.
 */
export async function installKeysCommand(o: {
  prefix: string;
  commandUser: string;
  uid: number;
}): Promise<{ path: string; changed: boolean }> {
  if (!isAbsolute(o.prefix)) {
    throw configError("USAGE", `--prefix ${o.prefix} is not an absolute path.`, {
      hint: `For example: nixpool access install-keys-command --prefix ${DEFAULT_KEYS_COMMAND_PREFIX}`,
    });
  }
  if (o.uid !== 0) {
    throw configError(
      "KEYS_COMMAND_NEEDS_ROOT",
      "Installing the keys command needs root (sshd runs only root's).",
      {
        hint: "Run: sudo nixpool access install-keys-command",
      },
    );
  }
  const account = await lookupAccount(o.commandUser);
  // Checked before anything is created (nothing is left behind by a refusal), and again after.
  let existing = o.prefix;
  while (existing !== "/" && !(await stat(existing).catch(() => undefined))) existing = dirname(existing);
  checkPrefix(o.prefix, (await statChain(existing)) ?? [], account);
  await mkdir(o.prefix, { recursive: true, mode: 0o755 });
  checkPrefix(o.prefix, (await statChain(o.prefix)) ?? [], account);
  const path = keysCommandPath(o.prefix);
  const r = await writeFileAtomic(path, renderKeysCommandScript(), { mode: 0o755 });
  await chown(path, 0, 0);
  await chmod(path, 0o755);
  return { path, changed: r.changed };
}

/** Refuses a prefix sshd would not accept, or that the command user cannot traverse. */
function checkPrefix(prefix: string, dirChain: readonly PathNode[], account: Account): void {
  const unsafe = findUnsafeForSshd(dirChain);
  if (unsafe) {
    throw configError(
      "KEYS_COMMAND_UNSAFE",
      `sshd would refuse a keys command in ${prefix}: ${unsafe.path} ${unsafe.reason}.`,
      {
        hint: `${unsafe.fix ? `Run: ${unsafe.fix}; or choose` : "Choose"} another prefix: --prefix ${DEFAULT_KEYS_COMMAND_PREFIX}`,
      },
    );
  }
  const blocked = findAccessBlocker(dirChain, account, { read: false, execute: false });
  if (blocked) {
    throw configError(
      "KEYS_COMMAND_UNREACHABLE",
      `${account.name} cannot search ${blocked.path} (mode ${formatMode(blocked.mode)}), so it could not run a keys command in ${prefix}.`,
      { hint: `Run: ${blocked.fix}; or choose another prefix: --prefix ${DEFAULT_KEYS_COMMAND_PREFIX}` },
    );
  }
}
