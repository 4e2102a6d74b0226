import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../adapters/runner.js";
import { spawnPiped } from "../adapters/piped-process.js";
import { waitFor } from "../adapters/wait-for.js";
import { NixpoolError } from "../core/errors.js";

/** A private ssh-agent holding one key for a short time, for a builder to log in to a target. */
export interface ForwardedAgent {
  /** The agent's socket: give it to ssh as SSH_AUTH_SOCK, with ForwardAgent=yes. */
  socket: string;
  /** Kills the agent and removes its directory. */
  stop(): Promise<void>;
}

/**
 * Starts an ssh-agent of nixpool's own (never the user's agent, which may hold every key) in a
 * 0700 directory, holding only `identityFile` for `lifetimeS` seconds: whoever is root on the
 * builder can use it only while the copy runs, and only for that key.
 */
export async function startForwardedAgent(identityFile: string, lifetimeS = 300): Promise<ForwardedAgent> {
  const dir = await mkdtemp(join(tmpdir(), "nixpool-agent-"));
  const socket = join(dir, "agent.sock");
  const agent = spawnPiped(["ssh-agent", "-D", "-a", socket]);
  const stop = async () => {
    agent.kill("SIGTERM");
    await agent.exited;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const up = await waitFor(() => existsSync(socket), { timeoutMs: 10_000 });
    if (!up) throw new NixpoolError("PROCESS_FAILED", "ssh-agent did not create its socket within 10 s.");
    await run(["ssh-add", "-q", "-t", String(lifetimeS), identityFile], {
      env: { SSH_AUTH_SOCK: socket },
      timeout: 30_000,
    });
  } catch (e) {
    await stop();
    throw e;
  }
  return { socket, stop };
}
