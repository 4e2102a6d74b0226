import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type {
  BuildDetail,
  BuildId,
  BuildStatus,
  CoordinatorApi,
  CoordinatorEvent,
} from "../coordinator-types.js";
import type { CacheStatsView } from "../cache/cache-stats.js";
import type { ApiEnv } from "./api-env.js";

/**
 * What a stream sends besides the coordinator's own events: a build's id once submitted, its end,
 * and (on the stream of every event) the binary cache's numbers after they changed.
 */
export type StreamEvent =
  | CoordinatorEvent
  | { type: "submitted"; id: BuildId }
  | { type: "end"; build: BuildDetail | undefined }
  | { type: "cache"; cache: CacheStatsView };

export const FINISHED: ReadonlySet<BuildStatus> = new Set(["succeeded", "failed", "cancelled"]);

/** The build an event is about (builder events are about none). */
export function buildIdOf(e: CoordinatorEvent): BuildId | undefined {
  if (e.type === "build") return e.build.id;
  return e.type === "builder" ? undefined : e.buildId;
}

/** Every open stream, so that a stopping service can end them (a server waits for open responses). */
export class StreamRegistry {
  private readonly open = new Set<() => void>();
  private readonly gone = new Set<() => void>();
  add(close: () => void): () => void {
    this.open.add(close);
    return () => {
      this.open.delete(close);
      if (this.open.size === 0) for (const fn of this.gone) fn();
    };
  }
  /** Asks every stream to end, and waits (at most `graceMs`) until each has sent what it had queued. */
  async closeAll(graceMs = 5_000): Promise<void> {
    if (this.open.size === 0) return;
    let done!: () => void;
    const ended = new Promise<void>((resolve) => (done = resolve));
    this.gone.add(done);
    const timer = setTimeout(done, graceMs);
    for (const close of [...this.open]) close();
    await ended;
    clearTimeout(timer);
    this.gone.delete(done);
  }
}

export interface EventStreamOptions {
  source: Pick<CoordinatorApi, "subscribe" | "build">;
  registry: StreamRegistry;
  /** Only this build's events, ending after it finished; all events when absent. */
  buildId?: BuildId;
  /** Runs once subscribed, before any event is sent: returns the build to follow (e.g. the one it submits). */
  start?: () => BuildId;
  heartbeatMs?: number;
  /** More events to send on the stream of every event (not one build's): the cache's numbers. */
  also?: (fn: (e: StreamEvent) => void) => () => void;
}

/** A reader this far behind is dropped rather than buffered without end. */
const MAX_PENDING = 10_000;

/**
 * An SSE response of coordinator events: `event: TYPE`, `data: JSON` (the event itself, with its
 * `type`), `id: N`; a comment line every heartbeat. Subscribes before `start` runs, so nothing
 * the build does between its submission and the first byte is lost.
 */
export function streamEvents(c: Context<ApiEnv>, o: EventStreamOptions): Response {
  // Subscribed and started before the response begins: a refused submission is still a JSON 4xx.
  const early: CoordinatorEvent[] = [];
  let deliver: (e: CoordinatorEvent) => void = (e) => void early.push(e);
  const unsubscribe = o.source.subscribe((e) => deliver(e));
  let started: BuildId | undefined;
  try {
    started = o.start?.();
  } catch (e) {
    unsubscribe();
    throw e;
  }
  return streamSSE(c, async (stream) => {
    let seq = 0;
    let pending = 0;
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    let chain = Promise.resolve();
    const write = (message: { event?: string; data: string; id?: string } | string) => {
      if (stream.aborted || stream.closed) return;
      if (++pending > MAX_PENDING) return finish();
      chain = chain
        .then(async () => {
          if (typeof message === "string") await stream.write(message);
          else await stream.writeSSE(message);
        })
        .then(
          () => void pending--,
          () => finish(),
        );
    };
    const send = (e: StreamEvent) => write({ event: e.type, data: JSON.stringify(e), id: String(++seq) });
    const followed = started ?? o.buildId;
    let ended = false;
    let ending: Promise<void> | undefined;
    const end = (id: BuildId) => {
      if (ended) return;
      ended = true;
      ending = o.source.build(id).then(
        (build) => {
          send({ type: "end", build });
          finish();
        },
        () => finish(),
      );
    };
    const onEvent = (e: CoordinatorEvent) => {
      if (followed === undefined) {
        send(e);
        return;
      }
      if (buildIdOf(e) !== followed) return;
      send(e);
      if (e.type === "build" && FINISHED.has(e.build.status)) end(followed);
    };
    // A stopping service lets a build's last event (already on its way) reach its client first.
    const unregister = o.registry.add(() => (ending ? void ending.finally(finish) : finish()));
    const unsubscribeAlso = followed === undefined ? o.also?.(send) : undefined;
    stream.onAbort(finish);
    const heartbeat = setInterval(() => write(": keep-alive\n\n"), o.heartbeatMs ?? 15_000);
    try {
      if (started !== undefined) send({ type: "submitted", id: started });
      for (const e of early.splice(0)) onEvent(e);
      deliver = onEvent;
      if (followed !== undefined && !ended) {
        const now = await o.source.build(followed);
        if (now) send(summaryOf(now));
        if (!now || FINISHED.has(now.status)) end(followed);
      }
      await finished;
      await chain;
    } finally {
      clearInterval(heartbeat);
      unsubscribe();
      unsubscribeAlso?.();
      unregister();
    }
  });
}

function summaryOf(d: BuildDetail): CoordinatorEvent & { type: "build" } {
  const { derivations: _d, outputs: _o, error: _e, ...summary } = d;
  return { type: "build", build: summary };
}
