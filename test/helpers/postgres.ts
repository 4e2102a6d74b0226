// A real PostgreSQL (Debian's postgresql package) for the tests: initdb in a fresh directory under
// /tmp owned by the `postgres` system user (initdb refuses root; CI's checkout is 0700, so nothing
// of it lives there), a Unix socket in that directory, TCP on 127.0.0.1 at a free port (and on
// more addresses of this machine when asked: a network namespace's link, see coordinators.ts),
// trust authentication. Stopped and removed by stop().
import { appendFile, chown, mkdtemp, readdir, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { execa } from "execa";
import pg from "pg";
import { waitFor } from "../../src/adapters/wait-for.js";

export interface TestPostgres {
  port: number;
  /** A URL of the server's `postgres` database (superuser, no password), on 127.0.0.1 or `host`. */
  url(database?: string, host?: string): string;
  /** Makes a new empty database and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** pg_ctl stop -m fast (connections are cut). */
  stopServer(): Promise<void>;
  /** Starts the same cluster again, on the same port. */
  startServer(): Promise<void>;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

/** The newest installed PostgreSQL's binaries (/usr/lib/postgresql/N/bin: Debian's layout). */
export async function postgresBin(): Promise<string> {
  const versions = (await readdir("/usr/lib/postgresql").catch(() => [] as string[]))
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0)
    throw new Error("no PostgreSQL under /usr/lib/postgresql: run scripts/install-deps.sh");
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function pgUid(): Promise<{ uid: number; gid: number }> {
  const { stdout } = await execa("id", ["-u", "postgres"], { timeout: 10_000 });
  const { stdout: g } = await execa("id", ["-g", "postgres"], { timeout: 10_000 });
  return { uid: Number(stdout.trim()), gid: Number(g.trim()) };
}

/** Runs one of PostgreSQL's programs as the postgres user. */
function asPostgres(bin: string, args: string[], timeoutMs = 120_000) {
  return execa("runuser", ["-u", "postgres", "--", bin, ...args], {
    timeout: timeoutMs,
    cwd: "/tmp",
    env: { LANG: "C.UTF-8", LC_ALL: "C.UTF-8" },
  });
}

export interface TestPostgresOptions {
  /** More addresses of this machine to listen on besides 127.0.0.1 (they must exist at start). */
  listen?: readonly string[];
  /** Networks (CIDR) whose clients are trusted over TCP besides 127.0.0.1/32. */
  trust?: readonly string[];
}

export async function startTestPostgres(o: TestPostgresOptions = {}): Promise<TestPostgres> {
  for (const net of o.trust ?? [])
    if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(net)) throw new Error(`not an IPv4 network: ${net}`);
  const bin = await postgresBin();
  const dir = await mkdtemp("/tmp/nixpool-pg-");
  const { uid, gid } = await pgUid();
  await chown(dir, uid, gid);
  const data = join(dir, "data");
  await asPostgres(`${bin}/initdb`, ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
  for (const net of o.trust ?? []) await appendFile(join(data, "pg_hba.conf"), `host all all ${net} trust\n`);
  const port = await freePort();
  const logFile = join(dir, "server.log");
  const options = [
    `-p ${port}`,
    `-k ${dir}`,
    `-c listen_addresses=${["127.0.0.1", ...(o.listen ?? [])].join(",")}`,
    "-c fsync=off",
    "-c max_connections=200",
  ].join(" ");
  const startServer = async () => {
    await asPostgres(`${bin}/pg_ctl`, ["-D", data, "-l", logFile, "-o", options, "-w", "-t", "60", "start"]);
  };
  const stopServer = async () => {
    await asPostgres(`${bin}/pg_ctl`, ["-D", data, "-m", "fast", "-w", "-t", "60", "stop"]);
  };
  await startServer();
  const url = (database = "postgres", host = "127.0.0.1") =>
    `postgresql://postgres@${host}:${port}/${database}`;
  let n = 0;
  let stopped = false;
  return {
    port,
    url,
    async createDatabase(name = `t${process.pid}_${++n}`) {
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name}"`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    stopServer,
    startServer,
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopServer().catch(() => undefined);
      await waitFor(async () => (await execa("pgrep", ["-f", data], { reject: false })).exitCode !== 0, {
        timeoutMs: 30_000,
        intervalMs: 100,
      }).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
