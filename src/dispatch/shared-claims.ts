import { waitFor } from "../adapters/wait-for.js";
import type { BuilderLink } from "./builder-link.js";

/** What claiming a derivation and a slot of its builder gave (src/serve/pool-claims.ts). */
export type ClaimOutcome =
  | { kind: "ok"; slot: number }
  /** Another live coordinator builds it now. */
  | { kind: "held"; by: string }
  /** Another coordinator built it on `builder` (its outputs are there). */
  | { kind: "built"; builder: string }
  /** Every slot of the builder is held by live coordinators. */
  | { kind: "full" };

/** The pool's shared state when several coordinators share it (the coordinator's database). */
export interface SharedWork {
  claim(w: { drv: string; builder: string; slots: number; force: boolean }): Promise<ClaimOutcome>;
  release(w: { drv: string; builder: string; slot: number; built: boolean }): Promise<void>;
  /** Of `drvs` others were building: those released, with where each was built (if it was). */
  released(drvs: readonly string[]): Promise<Map<string, { builtOn: string | undefined }>>;
  /** Slots of `builder` live coordinators hold now. */
  heldSlots(builder: string): Promise<number>;
}

/** A claim and a slot held for one attempt: given back with its outcome when the attempt ends. */
export interface SharedLease {
  release(built: boolean): void;
}

/**
 * The dispatcher's side of several coordinators: before an attempt starts it claims the derivation
 * and a builder slot in the shared database. A derivation another coordinator builds is not
 * assigned here until that one ends; what it built counts as built elsewhere (the same builder
 * serves both). A builder whose slots others hold is waited for, slot in hand.
 */
export class SharedClaims {
  /** Derivations another coordinator is building now. */
  readonly elsewhere = new Set<string>();
  private watching = false;
  /** Ends the retries and the watch when the coordinator closes. */
  private readonly closing = new AbortController();

  constructor(
    private readonly work: SharedWork,
    private readonly hooks: {
      /** Another coordinator built `drv` on `builder`. */
      builtBy(drv: string, builder: string): void;
      builderUp(name: string): boolean;
      wake(): void;
    },
  ) {}

  /**
   * The claim and a slot for `drv` on `link`; or undefined, after `back` took the assignment back:
   * not now (it is being built elsewhere: waited for), or not at all (built elsewhere: found).
   */
  async take(
    drv: string,
    link: BuilderLink,
    stopping: () => boolean,
    back: () => void,
  ): Promise<SharedLease | undefined> {
    let force = false;
    for (;;) {
      if (stopping()) return void back();
      const slots = link.builder.maxJobs;
      // A database that does not answer: wait as for a builder whose slots are all held.
      const c = await this.work
        .claim({ drv, builder: link.name, slots, force })
        .catch((): ClaimOutcome => ({ kind: "full" }));
      switch (c.kind) {
        case "ok":
          if (stopping()) {
            // Cancelled or failed while the database answered: nothing starts after that.
            this.release(drv, link.name, c.slot, false);
            return void back();
          }
          return { release: (built) => this.release(drv, link.name, c.slot, built) };
        case "held":
          back();
          this.watch(drv);
          return undefined;
        case "built":
          if (this.hooks.builderUp(c.builder)) {
            back(); // ready again first: only a ready derivation can be found built
            this.hooks.builtBy(drv, c.builder);
            return undefined;
          }
          force = true; // built on a builder that is gone here: build it again
          continue;
        case "full": {
          const freed = await waitFor(
            async () => stopping() || (await this.work.heldSlots(link.name).catch(() => slots)) < slots,
            { timeoutMs: 5_000, intervalMs: 200, signal: this.closing.signal },
          ).catch(() => false);
          // Still full: the derivation goes back, and may be placed on a builder with room.
          if (!freed) return void back();
        }
      }
    }
  }

  /**
   * Gives the claim and slot back, again until the database answers (a slot held for ever is lost
   * to the pool) or the coordinator closes (leaving, it gives back all it holds).
   */
  private release(drv: string, builder: string, slot: number, built: boolean): void {
    void waitFor(
      () =>
        this.work.release({ drv, builder, slot, built }).then(
          () => true,
          () => false,
        ),
      { timeoutMs: Number.MAX_SAFE_INTEGER, intervalMs: 1_000, signal: this.closing.signal },
    ).catch(() => undefined);
  }

  /** Stops retrying and watching (the coordinator closes). */
  close(): void {
    this.closing.abort();
  }

  /** Polls the derivations being built elsewhere until each is released (built: found there). */
  private watch(drv: string): void {
    this.elsewhere.add(drv);
    if (this.watching) return;
    this.watching = true;
    void waitFor(
      async () => {
        const released = await this.work.released([...this.elsewhere]).catch(() => new Map());
        for (const [d, { builtOn }] of released as Map<string, { builtOn: string | undefined }>) {
          this.elsewhere.delete(d);
          if (builtOn !== undefined && this.hooks.builderUp(builtOn)) this.hooks.builtBy(d, builtOn);
        }
        if (released.size > 0) this.hooks.wake();
        return this.elsewhere.size === 0;
      },
      { timeoutMs: Number.MAX_SAFE_INTEGER, intervalMs: 300, signal: this.closing.signal },
    )
      .catch(() => undefined)
      .finally(() => {
        this.watching = false;
        if (this.elsewhere.size > 0 && !this.closing.signal.aborted)
          this.watch([...this.elsewhere][0] as string);
      });
  }
}
