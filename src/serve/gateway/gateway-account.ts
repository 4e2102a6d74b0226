import { chmod, chown, open, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { statePaths } from "../../config/state-paths.js";
import { gatewayLogPath } from "./gateway-log.js";

/**
 * What the gateway's own account (`nixpool serve --gateway-user NAME`, docs/gateway.md) needs of
 * the coordinator's state directory, and nothing more: search permission for its group on the
 * directories of the API socket and of the gateway log (group x added, nothing else changed: no
 * listing, no reading of files it does not own), and the gateway log appendable by its group
 * (root:GROUP 0620, created empty if absent). The state directory itself must be traversable
 * (0711, as the installed keys command needs it for nobody).
 */
export async function grantGatewayAccount(stateDir: string, socketPath: string, gid: number): Promise<void> {
  const log = gatewayLogPath(stateDir);
  for (const dir of new Set([statePaths(stateDir).serve.dir, dirname(socketPath), dirname(log)])) {
    const st = await stat(dir);
    await chown(dir, st.uid, gid);
    await chmod(dir, (st.mode & 0o7777) | 0o010);
  }
  await (await open(log, "a", 0o620)).close();
  const st = await stat(log);
  await chown(log, st.uid, gid);
  await chmod(log, 0o620);
}
