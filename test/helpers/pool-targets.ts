import { join } from "node:path";
import { statePaths } from "../../src/config/state-paths.js";
import type { TargetSsh } from "../../src/core/deploy/target-ssh-argv.js";
import type { TargetLink } from "../../src/deploy/target-ssh.js";
import { writeTargetKnownHosts } from "../../src/deploy/target-ssh.js";
import type { TestPool } from "./pool.js";

/** Pool host `index` (0-based) seen as a deploy target: root, the pool's login key, its pinned key. */
export function poolHostTarget(tp: TestPool, index: number, overrides: Partial<TargetSsh> = {}): TargetSsh {
  const h = tp.pool.hosts[index];
  if (!h) throw new Error(`the pool has no host ${index}`);
  return {
    name: h.name,
    host: h.address,
    port: 22,
    user: "root",
    hostKey: h.hostKeyPub,
    identityFile: statePaths(tp.stateDir).localPool.clientKey,
    sudo: false,
    ...overrides,
  };
}

/** A link to a target through a known_hosts written under the pool's state directory. */
export async function linkTo(
  tp: TestPool,
  target: TargetSsh,
  file = "targets-known_hosts",
): Promise<TargetLink> {
  const knownHostsFile = await writeTargetKnownHosts(join(tp.stateDir, file), [target]);
  return { target, knownHostsFile };
}
