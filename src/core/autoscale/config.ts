/**
 * The autoscaler's settings, as `[autoscale.hetzner]` in the inventory gives them (validated in
 * src/config/autoscale-schema.ts; every key in docs/autoscale.md).
 */
export interface AutoscaleBudget {
  /** EUR per calendar hour (UTC), gross; absent: no cap. */
  hour?: number;
  /** EUR per calendar day (UTC), gross. */
  day?: number;
  /** EUR per calendar month (UTC), gross. */
  month?: number;
}

export interface AutoscaleConfig {
  minWorkers: number;
  maxWorkers: number;
  /** Server types to rent (the cheapest fitting one is taken), or "auto": any current type. */
  serverTypes: "auto" | string[];
  location: string;
  image: string;
  /** With "auto": what a type must offer at least. */
  minCores: number;
  /** GB. */
  minMemory: number;
  /** Waiting derivations that justify one more worker. */
  derivationsPerWorker: number;
  /** How long a derivation waits for a slot before it counts towards a rental. */
  scaleUpAfterMs: number;
  /** No worker is deleted sooner than this after it was created. */
  minLifetimeMs: number;
  /** An idle worker is deleted once its paid hour has less than this left (the deletion must finish first). */
  releaseMarginMs: number;
  /** How often the autoscaler looks at the queue. */
  intervalMs: number;
  /** Time allowed for a worker's creation, boot, SSH and Nix. */
  bootTimeoutMs: number;
  /**
   * Wake rentals from the newest matching snapshot of a suspended worker (`worker suspend`), when
   * one exists and fits the type's disk ("latest"), or always from `image` ("none").
   */
  fromSnapshot: "latest" | "none";
  /**
   * An idle worker the plan releases is suspended (`worker suspend`'s steps: its built outputs
   * kept, a labelled snapshot, the server deleted) instead of only deleted; the snapshots are
   * bounded by `[hetzner] keepSnapshots`.
   */
  suspendIdle: boolean;
  budget: AutoscaleBudget;
}

export const AUTOSCALE_DEFAULTS = {
  minWorkers: 0,
  serverTypes: "auto" as const,
  location: "fsn1",
  image: "debian-12",
  minCores: 2,
  minMemory: 2,
  derivationsPerWorker: 8,
  scaleUpAfterMs: 30_000,
  minLifetimeMs: 10 * 60_000,
  releaseMarginMs: 5 * 60_000,
  intervalMs: 15_000,
  bootTimeoutMs: 10 * 60_000,
  fromSnapshot: "latest" as const,
  suspendIdle: false,
};

/** Features every worker offers (src/providers/hetzner/records.ts workerBuilder). */
export const WORKER_FEATURES: readonly string[] = ["nixos-test", "big-parallel", "benchmark"];

/** The Hetzner architecture that builds a Nix system, or undefined when none does. */
export function architectureFor(system: string): "x86" | "arm" | undefined {
  if (system === "x86_64-linux") return "x86";
  if (system === "aarch64-linux") return "arm";
  return undefined;
}
