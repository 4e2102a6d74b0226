/**
 * Which coordinator runs the autoscaler: exactly one may rent and delete workers. Today one
 * coordinator runs per state directory, so it always leads; coordinators that share a PostgreSQL
 * store take the lead through the store (an advisory lock) by replacing this one function.
 */
export interface AutoscaleLeadership {
  /** True while this coordinator leads (asked before every tick; cheap to call again). */
  acquire(): Promise<boolean>;
  /** Gives the lead up (the coordinator closes). */
  release(): Promise<void>;
}

/** The single coordinator's leadership: always the leader. */
export function acquireAutoscaleLeadership(): AutoscaleLeadership {
  return { acquire: () => Promise.resolve(true), release: () => Promise.resolve() };
}
