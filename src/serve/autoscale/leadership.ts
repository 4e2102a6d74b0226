/**
 * Which coordinator runs the autoscaler: exactly one may rent and delete workers. The coordinator
 * passes the history's lease named `autoscaler` (src/serve/autoscale/coordinator-autoscale.ts:
 * renewed every tick, held for three ticks, at least 30 s), shared by coordinators on one
 * PostgreSQL store; acquireAutoscaleLeadership() below (always the leader) is only the default of
 * an Autoscaler built without one.
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
