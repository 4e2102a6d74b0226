import { join, resolve } from "node:path";

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
}

/** Resolves the access paths; --users FILE overrides STATE/users.toml. */
export function resolveAccessPaths(stateDir: string, usersFlag?: string): AccessPaths {
  const accessDir = join(stateDir, "access");
  return {
    stateDir,
    usersFile: usersFlag ? resolve(usersFlag) : join(stateDir, "users.toml"),
    accessDir,
    indexDir: join(accessDir, "index"),
    sshdDir: join(accessDir, "sshd"),
    githubCache: join(accessDir, "github-keys.json"),
    staticTarget: join(accessDir, "static-files.json"),
    lockFile: join(accessDir, "lock"),
    caDir: join(stateDir, "ca"),
  };
}
