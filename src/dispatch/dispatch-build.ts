import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { statePaths } from "../config/state-paths.js";
import { writeClientFiles } from "../adapters/nix-build.js";
import { runDispatch, type DispatchRequest, type DispatchResult } from "./run-dispatch.js";
import { serveSessions } from "./serve-sessions.js";

/** What a CLI build asks of the dispatcher; its files, logs and sessions come from the state directory. */
export type DispatchBuildRequest = Omit<
  DispatchRequest,
  "logDir" | "durationsFile" | "sessions" | "trustDir"
> & {
  stateDir: string;
};

/** A build through nixpool's own dispatcher, with nixpool's ssh_config and pinned keys. */
export async function dispatchBuild(req: DispatchBuildRequest): Promise<DispatchResult> {
  const usable = req.builders.filter((b) => b.hostKey);
  const files = usable.length ? await writeClientFiles(req.stateDir, usable) : undefined;
  // ssh's control sockets for this build: a private (0700) directory with a short path, as a
  // socket path must fit in 108 bytes; whoever can reach a socket can use the connection.
  const muxDir = await mkdtemp(join(tmpdir(), "nixpool-ssh-"));
  try {
    return await runDispatch({
      builders: req.builders,
      source: req.source,
      outLink: req.outLink,
      ...(req.signal ? { signal: req.signal } : {}),
      keepGoing: req.keepGoing ?? false,
      copyBack: req.copyBack ?? "needed",
      logDir: statePaths(req.stateDir).logs.dir,
      durationsFile: statePaths(req.stateDir).dispatch.durationsFile,
      ...(req.trust ? { trust: req.trust } : {}),
      trustDir: statePaths(req.stateDir).trust.dir,
      ...(req.rebuild ? { rebuild: req.rebuild } : {}),
      ...(req.references ? { references: req.references } : {}),
      ...(req.backoffBaseMs !== undefined ? { backoffBaseMs: req.backoffBaseMs } : {}),
      ...(req.onEvent ? { onEvent: req.onEvent } : {}),
      sessions: serveSessions(files?.sshConfig ?? "/dev/null", req.signal, muxDir),
    });
  } finally {
    await rm(muxDir, { recursive: true, force: true });
  }
}
