import type { Builder } from "../../core/builder.js";
import { ServeSession } from "../../adapters/nix-serve-session.js";
import type { Fleet } from "../../dispatch/fleet.js";
import { LOCAL_SERVE_ARGV } from "../../dispatch/serve-sessions.js";
import type { HistoryStore } from "../history-store.js";
import type { CacheSources } from "./cache-stores.js";

/**
 * Where a coordinator's binary cache reads paths: this machine's store and the fleet's builders
 * (their trust in the inventory, and whether up), read-only sessions over the coordinator's ssh
 * connections, and the history's record of who built what.
 */
export function coordinatorCacheSources(
  fleet: Fleet,
  openReader: ((b: Builder, name: string) => Promise<ServeSession>) | undefined,
  closed: () => boolean,
  history: HistoryStore,
): CacheSources {
  return {
    builders: () =>
      fleet.builders.map((b) => ({
        name: b.name,
        trust: b.trust,
        // Up, or still connecting (its first connection, or a probe): not known to be down.
        up:
          !closed() &&
          (fleet.board.builders.get(b.name)?.up === true ||
            (fleet.links.get(b.name) !== undefined && fleet.links.get(b.name)?.lostReason === undefined)),
      })),
    openLocal: () => ServeSession.open({ argv: LOCAL_SERVE_ARGV, name: "this machine's store (cache)" }),
    openBuilder: (name) => {
      const b = fleet.builders.find((x) => x.name === name);
      if (!b || !openReader) return Promise.reject(new Error(`no session to builder ${name}`));
      return openReader(b, `builder ${name} (cache)`);
    },
    recorded: { builtResults: (afterRow) => history.builtResults(afterRow) },
  };
}
