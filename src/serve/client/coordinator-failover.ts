import type { IncomingMessage } from "node:http";
import { waitFor } from "../../adapters/wait-for.js";
import { failoverOrder, submitOrder } from "../../core/coordinator-list.js";
import { NixpoolError, isNixpoolError } from "../../core/errors.js";
import type { SubmitRequest } from "../coordinator-types.js";
import { interrupted, type CoordinatorClient } from "./coordinator-client.js";
import type { ClientBuildDetail, StreamEvent } from "./coordinator-responses.js";

/** How long a client keeps asking for a lost build while no coordinator answers about it. */
export const FOLLOW_WITHOUT_ANSWER_MS = 60_000;
/** Streams of one build that may break in turn (each one after it answered) before the client gives up. */
export const MAX_LOST_STREAMS = 100;
/** The error code of a build whose coordinator died and whose adopter lacks its derivations. */
export const BUILD_ORPHANED = "BUILD_ORPHANED";

/**
 * The pause after a try while following a lost build: none between the coordinators of one round
 * of the list, then 0.25 s after the first round, doubling to at most 5 s.
 */
export function followBackoffMs(tries: number, count: number): number {
  if (count <= 0 || tries % count !== 0) return 0;
  return Math.min(5_000, 250 * 2 ** (tries / count - 1));
}

/**
 * An error that sends a submission to the next coordinator: this one cannot be reached, or it
 * answers 503 (COORDINATOR_DRAINING, DATABASE_UNREACHABLE). Any other refusal is final.
 */
export function triesNextCoordinator(e: unknown): boolean {
  if (!isNixpoolError(e)) return false;
  return e.code === "COORDINATOR_UNREACHABLE" || e.details?.["status"] === 503;
}

/**
 * An error that, while following a build, means "ask another coordinator": this one cannot be
 * reached, answers 503, or does not know the build (404: not yet seen, or not sharing the pool).
 */
export function followsElsewhere(e: unknown): boolean {
  if (!isNixpoolError(e)) return false;
  const status = e.details?.["status"];
  return e.code === "COORDINATOR_UNREACHABLE" || status === 503 || status === 404;
}

/** The build's detail, and the coordinator that sent its end (the one to download outputs from). */
export interface FollowedBuild {
  detail: ClientBuildDetail;
  client: CoordinatorClient;
}

export interface FailoverHooks {
  /** One line for the user (stderr): a coordinator skipped or lost, a build submitted again. */
  say: (line: string) => void;
  /** The build's events, from whichever coordinator sends them; `submitted` names the build. */
  onEvent: (e: StreamEvent, from: CoordinatorClient) => void;
}

/** Makes the request for one coordinator (uploading what its store lacks). */
export type PrepareRequest = (client: CoordinatorClient, signal: AbortSignal) => Promise<SubmitRequest>;

/**
 * One build through a list of coordinators (docs/coordinator.md, "Clients with several
 * coordinators"): submitted to the first that answers, followed on the others when its stream
 * breaks before the end, submitted again once when the end says BUILD_ORPHANED.
 */
export class CoordinatorFailover {
  /** The build's id once a coordinator named it. */
  id: string | undefined;
  /** The coordinator followed now: where a cancellation goes first. */
  current: CoordinatorClient;

  constructor(
    private readonly clients: readonly CoordinatorClient[],
    private readonly hooks: FailoverHooks,
  ) {
    const first = clients[0];
    if (!first) throw new RangeError("CoordinatorFailover needs at least one coordinator");
    this.current = first;
  }

  /**
   * Submits (`prepare` runs for each coordinator tried, under `prepareSignal`) and follows the
   * build to its end, reading under `readSignal`; the end's detail, whatever its status.
   */
  async run(
    prepare: PrepareRequest,
    prepareSignal: AbortSignal,
    readSignal: AbortSignal,
  ): Promise<FollowedBuild> {
    const first = await this.submitAndFollow(0, prepare, prepareSignal, readSignal);
    if (!isOrphaned(first.detail) || prepareSignal.aborted) return first;
    this.hooks.say(
      `build ${first.detail.id} was orphaned (its coordinator stopped and ${first.client.name} lacks its derivations); submitting it again to ${first.client.name}`,
    );
    this.id = undefined;
    return this.submitAndFollow(this.clients.indexOf(first.client), prepare, prepareSignal, readSignal);
  }

  /** Cancels the build on the coordinator followed now, else on the next one that answers. */
  async cancel(): Promise<void> {
    const id = this.id;
    if (id === undefined) return;
    let last: unknown;
    for (const i of submitOrder(this.clients.length, this.clients.indexOf(this.current))) {
      try {
        await this.at(i).cancel(id);
        return;
      } catch (e) {
        if (!followsElsewhere(e)) throw e;
        last = e;
      }
    }
    throw last;
  }

  private at(i: number): CoordinatorClient {
    const c = this.clients[i];
    if (!c) throw new RangeError(`no coordinator ${i}`);
    return c;
  }

  private get names(): string {
    return this.clients.map((c) => c.name).join(", ");
  }

  /** One pass over the list from `start`: each coordinator tried once, the next on no answer or 503. */
  private async submitAndFollow(
    start: number,
    prepare: PrepareRequest,
    prepareSignal: AbortSignal,
    readSignal: AbortSignal,
  ): Promise<FollowedBuild> {
    const order = submitOrder(this.clients.length, start);
    for (const [k, i] of order.entries()) {
      const client = this.at(i);
      this.current = client;
      try {
        const request = await prepare(client, prepareSignal);
        if (prepareSignal.aborted) throw interrupted();
        const end = await client.submit(
          request,
          (e) => {
            if (e.type === "submitted") this.id = e.id;
            this.hooks.onEvent(e, client);
          },
          readSignal,
        );
        return await this.detailOf(client, end);
      } catch (e) {
        if (this.id !== undefined) {
          // Named, then lost: the build goes on without this stream; follow it on the others (a
          // single coordinator's client ends here, as it always did).
          if (isNixpoolError(e) && e.code === "COORDINATOR_UNREACHABLE" && this.clients.length > 1)
            return this.followLost(i, readSignal);
          throw e;
        }
        const next = order[k + 1];
        if (!triesNextCoordinator(e) || prepareSignal.aborted) throw e;
        if (next === undefined) {
          if (this.clients.length === 1 || !isNixpoolError(e) || e.code !== "COORDINATOR_UNREACHABLE")
            throw e;
          throw new NixpoolError(
            "COORDINATOR_UNREACHABLE",
            `None of the coordinators ${this.names} answers.`,
            {
              hint: "Check that nixpool serve runs at one of them (or build here: --no-coordinator).",
              cause: e,
            },
          );
        }
        const reason = isNixpoolError(e) ? e.details?.["reason"] : undefined;
        const why = !isNixpoolError(e)
          ? "does not answer"
          : e.code === "COORDINATOR_UNREACHABLE"
            ? `does not answer${typeof reason === "string" ? ` (${reason})` : ""}`
            : `takes no new builds (${e.code})`;
        this.hooks.say(`coordinator ${client.name} ${why}; trying ${this.at(next).name}`);
      }
    }
    throw new RangeError("no coordinator to submit to");
  }

  /** Follows the named build on the others after the coordinator at `lost` lost its stream. */
  private async followLost(lost: number, signal: AbortSignal): Promise<FollowedBuild> {
    const id = this.id;
    if (id === undefined) throw new RangeError("no build to follow");
    for (let streams = 0; streams < MAX_LOST_STREAMS; streams++) {
      const found = await this.findFollower(id, lost, signal);
      this.hooks.say(`coordinator ${this.at(lost).name} lost; following build ${id} on ${found.client.name}`);
      this.current = found.client;
      try {
        const end = await found.client.readBuildStream(
          found.res,
          id,
          (e) => this.hooks.onEvent(e, found.client),
          signal,
        );
        return await this.detailOf(found.client, end);
      } catch (e) {
        if (!isNixpoolError(e) || e.code !== "COORDINATOR_UNREACHABLE") throw e;
        lost = found.index;
      }
    }
    throw new NixpoolError(
      "COORDINATOR_UNREACHABLE",
      `The stream of build ${id} broke ${MAX_LOST_STREAMS} times on the coordinators ${this.names}.`,
      {
        hint: `See whether it goes on: GET /api/builds/${id} on any of them, or their dashboard.`,
        details: { buildId: id },
      },
    );
  }

  /** The first coordinator, from the one after `lost` round the list, that opens the build's stream. */
  private async findFollower(
    id: string,
    lost: number,
    signal: AbortSignal,
  ): Promise<{ client: CoordinatorClient; index: number; res: IncomingMessage }> {
    const order = failoverOrder(this.clients.length, lost);
    let tries = 0;
    let last: unknown;
    const found = await waitFor(
      async () => {
        const index = order[tries++ % order.length] ?? 0;
        const client = this.at(index);
        try {
          return { client, index, res: await client.openBuildEvents(id, signal) };
        } catch (e) {
          if (signal.aborted) throw interrupted();
          if (!followsElsewhere(e)) throw e;
          last = e;
          return undefined;
        }
      },
      { timeoutMs: FOLLOW_WITHOUT_ANSWER_MS, intervalMs: (t) => followBackoffMs(t, order.length), signal },
    ).catch((e: unknown) => {
      throw signal.aborted ? interrupted() : e;
    });
    if (found) return found;
    throw new NixpoolError(
      "COORDINATOR_UNREACHABLE",
      `No coordinator of ${this.names} answered about build ${id} for ${FOLLOW_WITHOUT_ANSWER_MS / 1000} s after ${this.at(lost).name} was lost.`,
      {
        hint: `When one is back, see how the build ended: GET /api/builds/${id} (or its dashboard); submit it again if it did not finish.`,
        details: { buildId: id },
        ...(last !== undefined ? { cause: last } : {}),
      },
    );
  }

  private async detailOf(
    client: CoordinatorClient,
    end: ClientBuildDetail | undefined,
  ): Promise<FollowedBuild> {
    if (end) return { detail: end, client };
    if (this.id !== undefined) return { detail: await client.build(this.id), client };
    throw new NixpoolError(
      "COORDINATOR_BAD_RESPONSE",
      `The coordinator at ${client.name} never named the build.`,
      {
        hint: "Is that a nixpool serve of the same version? Check with: nixpool --version on both ends.",
      },
    );
  }
}

/** A build that ended failed with BUILD_ORPHANED: submit it again. */
export function isOrphaned(d: ClientBuildDetail): boolean {
  return d.status === "failed" && d.error?.code === BUILD_ORPHANED;
}
