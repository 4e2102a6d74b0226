import { poolDown, poolUp } from "../../src/providers/local/pool.js";
import type { Pool } from "../../src/providers/local/records.js";
import { makeTempDir, runCli, type CliOptions } from "./cli.js";

export interface TestPool {
  stateDir: string;
  pool: Pool;
  /** Runs the CLI against this pool's state directory. */
  cli: (args: readonly string[], options?: CliOptions) => ReturnType<typeof runCli>;
  /** Stops the pool and removes its state; safe to call twice. */
  cleanup: () => Promise<void>;
}

/** Starts a local pool of N builders × J jobs in a fresh state directory. */
export async function startTestPool(builders = 2, jobs = 2): Promise<TestPool> {
  const tmp = await makeTempDir("nixpool-pool-");
  const stateDir = tmp.dir;
  let pool: Pool;
  try {
    pool = await poolUp(stateDir, { builders, jobs });
  } catch (e) {
    await poolDown(stateDir).catch(() => undefined);
    await tmp.cleanup();
    throw e;
  }
  let done = false;
  return {
    stateDir,
    pool,
    cli: (args, options) => runCli(stateDir, args, options),
    cleanup: async () => {
      if (done) return;
      done = true;
      await poolDown(stateDir);
      await tmp.cleanup();
    },
  };
}
