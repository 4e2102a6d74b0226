import { resolve } from "node:path";
import { statePaths } from "../config/state-paths.js";

/** Where access control keeps its files inside the state directory. */
export interface AccessPaths {
  stateDir: string;
  usersFile: string;
  accessDir: string;
  /** One precompiled file per member, read by `access keys` at every login. */
  indexDir: string;
  /** What the installed keys command prints: sshd/{ssh-ng,ssh,principals}/USER. */
  sshdDir: string;
  githubCache: string;
  /** The remembered `access sync --write DIR` target. */
  staticTarget: string;
  lockFile: string;
  caDir: string;
  /**
   * The gateway as sshd runs it for a client's key: this very nixpool (node and its entry script,
   * absolute) on this state directory; `--client NAME` is appended per member.
   */
  gatewayCommand: string;
}

/** Resolves the access paths (statePaths(stateDir).access and .ca); --users FILE overrides STATE/users.toml. */
export function resolveAccessPaths(stateDir: string, usersFlag?: string): AccessPaths {
  const paths = statePaths(stateDir);
  return {
    stateDir,
    usersFile: usersFlag ? resolve(usersFlag) : paths.access.usersFile,
    accessDir: paths.access.dir,
    indexDir: paths.access.indexDir,
    sshdDir: paths.access.sshdDir,
    githubCache: paths.access.githubCache,
    staticTarget: paths.access.staticTarget,
    lockFile: paths.access.lockFile,
    caDir: paths.ca.dir,
    gatewayCommand: [
      process.execPath,
      resolve(process.argv[1] ?? "nixpool"),
      "--state-dir",
      resolve(stateDir),
      "gateway",
    ].join(" "),
  };
}
