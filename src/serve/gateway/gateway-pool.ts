import type { PathInfo } from "../../core/nix-serve/index.js";
import type { CoordinatorClient } from "../client/coordinator-client.js";
import type { GatewayPool } from "./gateway-session.js";

/** The pool's stores through the coordinator's socket (`/api/pool/*`). */
export class CoordinatorPool implements GatewayPool {
  constructor(private readonly coordinator: CoordinatorClient) {}

  validPaths(paths: readonly string[], substitute: boolean): Promise<string[]> {
    return this.coordinator.poolValid(paths, substitute);
  }

  fetchToLocal(paths: readonly string[]): Promise<void> {
    return this.coordinator.poolFetch(paths);
  }

  pathInfos(paths: readonly string[]): Promise<PathInfo[]> {
    return this.coordinator.poolPathInfos(paths);
  }

  closure(paths: readonly string[]): Promise<string[]> {
    return this.coordinator.poolClosure(paths);
  }

  nar(path: string): Promise<AsyncIterable<Uint8Array>> {
    return this.coordinator.poolNar(path);
  }
}
