import type { AutoscaleConfig } from "../../core/autoscale/config.js";
import type { Builder } from "../../core/builder.js";
import { writeClientFiles } from "../../adapters/nix-build.js";
import type { BuildRun } from "../../dispatch/build-run.js";
import type { Fleet } from "../../dispatch/fleet.js";
import type { AutoscaleProvider } from "../../providers/hetzner/autoscale-provider.js";
import { Autoscaler, type AutoscaleHistory } from "./autoscaler.js";
import type { AutoscaleLeadership } from "./leadership.js";

// The autoscaler wired to the coordinator: its queue, its fleet, its history.

/** `[autoscale.hetzner]` as the coordinator takes it (src/commands/serve.ts builds it). */
export interface CoordinatorAutoscale {
  config: AutoscaleConfig;
  provider: AutoscaleProvider;
  /** The autoscaler's clock (default: the coordinator's). */
  clock?: () => number;
  leadership?: AutoscaleLeadership;
  log?: (line: string) => void;
}

/** Ready derivations no slot has taken, over every running build, each once. */
export function waitingDerivations(
  builds: Iterable<{ run: Pick<BuildRun, "waiting"> }>,
): { drv: string; system: string; features: readonly string[] }[] {
  const seen = new Set<string>();
  const out: { drv: string; system: string; features: readonly string[] }[] = [];
  for (const b of builds) {
    for (const n of b.run.waiting()) {
      if (seen.has(n.drv)) continue;
      seen.add(n.drv);
      out.push({ drv: n.drv, system: n.system, features: n.features });
    }
  }
  return out;
}

/**
 * The coordinator's autoscaler: workers join its fleet once they answer (with nixpool's
 * ssh_config rewritten first, unless the sessions are a test's own), and builds whose work a
 * worker could take wait for one rather than fail.
 */
export function createAutoscaler(
  a: CoordinatorAutoscale,
  c: {
    /** The history's lease "autoscaler": one autoscaler among coordinators sharing the history. */
    lease: { take: (ttlMs: number) => Promise<boolean>; give: () => Promise<void> };
    stateDir: string;
    writeSshFiles: boolean;
    fleet: Fleet;
    history: AutoscaleHistory;
    clock: () => number;
    /** The coordinator's running builds. */
    builds: () => Iterable<{ run: Pick<BuildRun, "waiting" | "records"> }>;
  },
): Autoscaler {
  const { fleet } = c;
  const join = joinWithSshFiles(c);
  const autoscaler = new Autoscaler({
    config: a.config,
    provider: a.provider,
    pool: {
      waiting: () => waitingDerivations(c.builds()),
      // Busy: building, or holding outputs a running build may still fetch (its inputs, its results).
      running: (name) => {
        let n = fleet.board.builders.get(name)?.running ?? 0;
        for (const b of c.builds()) {
          for (const r of b.run.records.values()) if (r.builder === name) n++;
        }
        return n;
      },
      join,
      leave: (name, reason) => fleet.removeBuilder(name, reason),
    },
    history: c.history,
    clock: a.clock ?? c.clock,
    log: a.log ?? (() => undefined),
    // Renewed every tick and held for three ticks (at least 30 s): another coordinator takes the
    // lead once this one's lease lapses (it stopped, or lost the database).
    leadership: a.leadership ?? {
      acquire: () => c.lease.take(Math.max(30_000, 3 * a.config.intervalMs)),
      release: () => c.lease.give(),
    },
  });
  fleet.mayGrow = (needs) => autoscaler.mayServe(needs);
  return autoscaler;
}

/**
 * Adds a worker to the fleet once nixpool's ssh_config and known_hosts name it. Joins are
 * written one at a time, each with every builder of the fleet and every one still joining: two
 * workers that answer at the same moment would otherwise each write a file without the other
 * (the last ssh_config and the last known_hosts from different writes), and the one left out
 * could never be reached.
 */
export function joinWithSshFiles(
  c: {
    stateDir: string;
    writeSshFiles: boolean;
    fleet: Pick<Fleet, "builders" | "addBuilder">;
  },
  /** What writes the files for a list of builders. */
  write: (stateDir: string, builders: readonly Builder[]) => Promise<unknown> = writeClientFiles,
): (b: Builder) => Promise<void> {
  const joining = new Set<Builder>();
  let writes: Promise<void> = Promise.resolve();
  return async (b) => {
    if (c.writeSshFiles) {
      joining.add(b);
      const written = writes.then(() => write(c.stateDir, [...c.fleet.builders, ...joining]));
      writes = written.then(
        () => undefined,
        () => undefined,
      );
      try {
        await written;
      } catch (e) {
        joining.delete(b);
        throw e;
      }
      joining.delete(b);
    }
    c.fleet.addBuilder(b);
  };
}
