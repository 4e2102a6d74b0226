// Several coordinators on one pool (issue #22): a test PostgreSQL, one local pool, and N real
// `nixpool serve` processes on the pool's state directory sharing one database through
// NIXPOOL_DATABASE_URL, each with its own --socket and --listen. A coordinator may run in its own
// network namespace (a slot of the local pool's network, like a builder host's: a veth /30 routed
// to the builders by this machine), listening on its namespace's address and reaching PostgreSQL
// over TCP on its link's address on this machine; cutting its link cuts the database, the builders
// and its TCP clients at once (its Unix socket, a file, still answers from this machine).
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { hostAddresses, netnsName } from "../../src/core/local-net.js";
import { linkSlot, reserveSlot, setLinkUp, stopHost } from "../../src/providers/local/host.js";
import { ensureServeToken } from "../../src/serve/serve-token.js";
import { startTestPool, type TestPool } from "./pool.js";
import { startTestPostgres, type TestPostgres } from "./postgres.js";
import { startServe, type ServeProcess } from "./serve-process.js";

/** A network namespace of the local pool's network that one coordinator runs in. */
export interface CoordinatorNetns {
  netns: string;
  slot: number;
  /** The coordinator's address (inside the namespace). */
  address: string;
  /** This machine's end of the link: where the namespace reaches PostgreSQL. */
  hostAddress: string;
}

export interface TestCoordinator {
  /** 0-based, in the order they were started. */
  index: number;
  /** The running process (replaced by restart()). */
  serve: ServeProcess;
  /** http://ADDRESS:PORT of its API (send `token`). */
  url: string;
  /** Its Unix socket. */
  socket: string;
  /** The database URL it was given (over TCP to `netns.hostAddress` when namespaced). */
  databaseUrl: string;
  /** Set when it runs in its own network namespace. */
  netns: CoordinatorNetns | undefined;
  /** What it printed so far (stdout and stderr). */
  log: () => string;
  /** Takes its namespace's link down: it loses the database, the builders and its TCP clients. */
  cutLink: () => Promise<void>;
  /** Brings the link up again. */
  restoreLink: () => Promise<void>;
  /** Sends a signal (SIGTERM by default) and waits for the exit. */
  stop: (signal?: NodeJS.Signals) => Promise<number | undefined>;
  /** Starts it again (same socket, database and namespace) after it stopped. */
  restart: () => Promise<void>;
}

export interface TestCoordinators {
  pool: TestPool;
  postgres: TestPostgres;
  /** The shared database's name. */
  database: string;
  /** Its URL from this machine (127.0.0.1). */
  databaseUrl: string;
  /** The API token of the coordinators' state directory (every coordinator's). */
  token: string;
  coordinators: TestCoordinator[];
  /** GET/POST… on a coordinator's TCP API with the token; `timeoutMs` bounds the whole request. */
  request: (
    c: TestCoordinator,
    path: string,
    init?: RequestInit & { timeoutMs?: number },
  ) => Promise<{ status: number; body: string }>;
  /** Stops every coordinator, namespace, PostgreSQL and the pool, and removes their files; safe twice. */
  stop: () => Promise<void>;
}

export interface CoordinatorsOptions {
  /** How many coordinators (default 2). */
  count?: number;
  /** Which of them (0-based) run in their own network namespace. */
  namespaced?: readonly number[];
  builders?: number;
  jobs?: number;
  /** More arguments for every `nixpool serve`. */
  serveArgs?: readonly string[];
  /** Arguments before `serve` (e.g. `--inventory FILE`). */
  globalArgs?: readonly string[];
  /** More environment for every `nixpool serve` (e.g. the Hetzner emulator's endpoint and token). */
  env?: Readonly<Record<string, string>>;
  /**
   * The coordinators' state directory instead of the pool's (e.g. an empty one: no static builders,
   * only what the autoscaler rents); the pool still runs, for the namespaces' network.
   */
  stateDir?: string;
}

/**
 * Starts PostgreSQL, a local pool and `count` coordinators on them (one after the other, so the
 * first makes the API token and applies the migrations). On any failure everything started so far
 * is stopped before the error is thrown; otherwise the caller's `stop()` (in an `after` hook) does it.
 */
export async function startCoordinators(o: CoordinatorsOptions = {}): Promise<TestCoordinators> {
  const count = o.count ?? 2;
  const namespaced = new Set(o.namespaced ?? []);
  const undo: (() => Promise<unknown>)[] = [];
  const coordinators: TestCoordinator[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // Processes first (SIGKILL after SIGTERM fails), then namespaces, PostgreSQL, the pool, files.
    for (const c of coordinators) await c.stop("SIGKILL").catch(() => undefined);
    for (const f of undo.reverse()) await f().catch(() => undefined);
  };
  try {
    const pool = await startTestPool(o.builders ?? 2, o.jobs ?? 2);
    undo.push(() => pool.cleanup());
    const dir = await mkdtemp(join(tmpdir(), "nixpool-coordinators-"));
    undo.push(() => rm(dir, { recursive: true, force: true }));

    const spaces = new Map<number, CoordinatorNetns>();
    for (const i of [...namespaced].sort()) {
      if (!Number.isInteger(i) || i < 0 || i >= count) throw new Error(`no coordinator ${i} of ${count}`);
      const slot = await reserveSlot();
      const space = { netns: netnsName(slot), slot, ...hostAddresses(slot) };
      // stopHost stops exactly the namespace's processes, deletes its link and the namespace.
      undo.push(() => stopHost({ netns: space.netns, slot, dir: "", sshdPid: 0 }));
      await linkSlot(slot);
      spaces.set(i, space);
    }
    const hostSides = [...spaces.values()].map((s) => s.hostAddress);
    const postgres = await startTestPostgres({
      listen: hostSides,
      trust: [...spaces.values()].map((s) => `${s.address}/32`),
    });
    undo.push(() => postgres.stop());
    const database = `coordinators_${process.pid}`;
    const databaseUrl = await postgres.createDatabase(database);
    const stateDir = o.stateDir ?? pool.stateDir;
    const token = await ensureServeToken(stateDir);

    for (let index = 0; index < count; index++) {
      const space = spaces.get(index);
      const url = space ? postgres.url(database, space.hostAddress) : databaseUrl;
      const socket = join(dir, `api-${index}.sock`);
      const listen = `${space ? space.address : "127.0.0.1"}:0`;
      const launch = () =>
        startServe(
          stateDir,
          ["--socket", socket, "--listen", listen, ...(o.serveArgs ?? [])],
          [...(o.globalArgs ?? [])],
          { ...o.env, NIXPOOL_DATABASE_URL: url },
          space ? ["ip", "netns", "exec", space.netns] : [],
        );
      const c: TestCoordinator = {
        index,
        serve: await launch(),
        url: "",
        socket,
        databaseUrl: url,
        netns: space,
        log: () => c.serve.stdout() + c.serve.stderr(),
        cutLink: async () => {
          if (!space) throw new Error(`coordinator ${index} has no namespace of its own`);
          await setLinkUp({ slot: space.slot }, false);
        },
        restoreLink: async () => {
          if (!space) throw new Error(`coordinator ${index} has no namespace of its own`);
          await setLinkUp({ slot: space.slot }, true);
        },
        stop: (signal) => c.serve.stop(signal),
        restart: async () => {
          await c.serve.exited();
          c.serve = await launch();
          c.url = c.serve.url;
        },
      };
      c.url = c.serve.url;
      coordinators.push(c);
    }

    const request: TestCoordinators["request"] = async (c, path, init = {}) => {
      const { timeoutMs = 10_000, ...rest } = init;
      const res = await fetch(`${c.url}${path}`, {
        ...rest,
        headers: { Authorization: `Bearer ${token}`, ...(rest.headers ?? {}) },
        signal: AbortSignal.timeout(timeoutMs),
      });
      return { status: res.status, body: await res.text() };
    };
    return { pool, postgres, database, databaseUrl, token, coordinators, request, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
