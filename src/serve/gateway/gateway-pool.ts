import type { PathInfo } from "../../core/nix-serve/index.js";
import type { CoordinatorClient } from "../client/coordinator-client.js";
import { followsElsewhere } from "../client/coordinator-failover.js";
import type { GatewayPool } from "./gateway-session.js";

/**
 * The pool's stores through the coordinator's socket (`/api/pool/*`). With several coordinators
 * sharing this machine's store and the pool, a question one cannot answer (gone, 503) goes to the
 * next, which stays the one asked.
 */
export class CoordinatorPool implements GatewayPool {
  private readonly coordinators: readonly CoordinatorClient[];
  private current = 0;

  constructor(coordinator: CoordinatorClient, others: readonly CoordinatorClient[] = []) {
    this.coordinators = [coordinator, ...others];
  }

  private async ask<T>(fn: (c: CoordinatorClient) => Promise<T>): Promise<T> {
    let last: unknown;
    for (let tried = 0; tried < this.coordinators.length; tried++) {
      const i = (this.current + tried) % this.coordinators.length;
      try {
        const r = await fn(this.coordinators[i] as CoordinatorClient);
        this.current = i;
        return r;
      } catch (e) {
        if (!followsElsewhere(e) || this.coordinators.length === 1) throw e;
        last = e;
      }
    }
    throw last;
  }

  validPaths(paths: readonly string[], substitute: boolean): Promise<string[]> {
    return this.ask((c) => c.poolValid(paths, substitute));
  }

  fetchToLocal(paths: readonly string[]): Promise<void> {
    return this.ask((c) => c.poolFetch(paths));
  }

  pathInfos(paths: readonly string[]): Promise<PathInfo[]> {
    return this.ask((c) => c.poolPathInfos(paths));
  }

  closure(paths: readonly string[]): Promise<string[]> {
    return this.ask((c) => c.poolClosure(paths));
  }

  nar(path: string): Promise<AsyncIterable<Uint8Array>> {
    return this.ask((c) => c.poolNar(path));
  }
}
