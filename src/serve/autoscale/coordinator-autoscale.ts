import { hostname } from "node:os";
import { resolve } from "node:path";
import type { AutoscaleConfig } from "../../core/autoscale/config.js";
import type { Builder } from "../../core/builder.js";
import { writeClientFiles } from "../../adapters/nix-build.js";
import type { BuildRun } from "../../dispatch/build-run.js";
import type { Fleet } from "../../dispatch/fleet.js";
import type { AutoscaleProvider } from "../../providers/hetzner/autoscale-provider.js";
import { readRecords, workerBuilder } from "../../providers/hetzner/records.js";
import type { QueuedWork } from "../pool-claims.js";
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
 * What a coordinator tells the others of its queue with every heartbeat (several coordinators on
 * PostgreSQL): its waiting derivations, and where it can use a rented worker — coordinators that
 * share a state directory on one host share the worker records and their login keys.
 */
export function sharedQueue(
  stateDir: string,
  builds: () => Iterable<{ run: Pick<BuildRun, "waiting"> }>,
): { state: string; waiting: () => QueuedWork[] } {
  return { state: `${hostname()}:${resolve(stateDir)}`, waiting: () => waitingDerivations(builds()) };
}

/** Every ready worker in the state directory's records (any coordinator's or `worker up`'s). */
async function readyWorkers(stateDir: string): Promise<Builder[]> {
  const records = await readRecords(stateDir);
  return records.filter((r) => r.status === "ready" && r.ipv4 && r.hostKeyPub).map(workerBuilder);
}

/** ssh_config and known_hosts for these builders and every ready worker of the state directory. */
async function writeSshFor(stateDir: string, builders: readonly Builder[]): Promise<void> {
  const all = new Map(builders.map((b) => [b.name, b]));
  for (const w of await readyWorkers(stateDir).catch(() => [])) if (!all.has(w.name)) all.set(w.name, w);
  await writeClientFiles(stateDir, [...all.values()]);
}

/**
 * The coordinator's autoscaler: workers join its fleet once they answer (with nixpool's
 * ssh_config rewritten first, unless the sessions are a test's own), and builds whose work a
 * worker could take wait for one rather than fail. With several coordinators (`peers`), the
 * leader plans from every coordinator's waiting work, counts the slots others hold on its workers
 * as busy, and every coordinator joins the workers the others rented (their records are in the
 * shared state directory) and drops those that were deleted.
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
    /** The other coordinators on the database: their waiting work, the slots they hold. */
    peers?: { queuedElsewhere(): QueuedWork[]; slotsElsewhere(builder: string): number };
  },
): Autoscaler {
  const { fleet, peers } = c;
  const log = a.log ?? (() => undefined);
  // One writer of the state directory's ssh files at a time, each write naming every worker joining.
  const join = joinWithSshFiles(c, peers ? writeSshFor : writeClientFiles);
  /** The workers other coordinators rented join this fleet; those deleted leave it once idle here. */
  const joinOthersWorkers = async (own: ReadonlySet<string>): Promise<void> => {
    const ready = (await readyWorkers(c.stateDir)).filter((w) => !own.has(w.name));
    const names = new Set(ready.map((w) => w.name));
    const add = ready.filter((w) => !fleet.builders.some((b) => b.name === w.name));
    for (const w of add) {
      await join(w);
      log(`autoscale: ${w.name} (rented by another coordinator) joined the pool`);
    }
    // Deleted by whoever rented it (its record is gone): it leaves once idle here.
    for (const b of [...fleet.builders])
      if (b.source === "hetzner" && !own.has(b.name) && !names.has(b.name))
        if (fleet.removeBuilder(b.name, "deleted by the coordinator that rented it"))
          log(`autoscale: ${b.name} left the pool (deleted by the coordinator that rented it)`);
  };
  const autoscaler = new Autoscaler({
    config: a.config,
    provider: a.provider,
    pool: {
      waiting: () => {
        const mine = waitingDerivations(c.builds());
        const seen = new Set(mine.map((w) => w.drv));
        for (const w of peers?.queuedElsewhere() ?? []) {
          if (seen.has(w.drv)) continue;
          seen.add(w.drv);
          mine.push(w);
        }
        return mine;
      },
      // Busy: building (here or, through its slots, for another coordinator), or holding outputs
      // a running build may still fetch (its inputs, its results).
      running: (name) => {
        let n = (fleet.board.builders.get(name)?.running ?? 0) + (peers?.slotsElsewhere(name) ?? 0);
        for (const b of c.builds()) {
          for (const r of b.run.records.values()) if (r.builder === name) n++;
        }
        return n;
      },
      join,
      leave: (name, reason) => fleet.removeBuilder(name, reason),
      // Several coordinators only (one coordinator's pool is what it rented and what it started with).
      ...(peers ? { sync: (own: ReadonlySet<string>) => joinOthersWorkers(own) } : {}),
    },
    history: c.history,
    clock: a.clock ?? c.clock,
    log,
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
