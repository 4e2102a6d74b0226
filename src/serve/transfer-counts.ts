import type { Fleet } from "../dispatch/fleet.js";

/** Paths and bytes the fleet has moved: up to the builders, down into this machine's store. */
export interface TransferCounts {
  up: number;
  down: number;
  bytesUp: number;
  bytesDown: number;
}

/** The fleet's counts now (uploads to the builders' current links: a reconnected builder starts again at 0). */
export function transferCounts(fleet: Pick<Fleet, "links" | "localPlace">): TransferCounts {
  const links = [...fleet.links.values()];
  return {
    up: links.reduce((n, l) => n + l.place.sent, 0),
    down: fleet.localPlace.sent,
    bytesUp: links.reduce((n, l) => n + l.place.sentBytes, 0),
    bytesDown: fleet.localPlace.sentBytes,
  };
}

/** What moved since `start` (never below 0, as a link that reconnected counts again from 0). */
export function transfersSince(
  fleet: Pick<Fleet, "links" | "localPlace">,
  start: TransferCounts,
): TransferCounts {
  const now = transferCounts(fleet);
  return {
    up: Math.max(0, now.up - start.up),
    down: Math.max(0, now.down - start.down),
    bytesUp: Math.max(0, now.bytesUp - start.bytesUp),
    bytesDown: Math.max(0, now.bytesDown - start.bytesDown),
  };
}
