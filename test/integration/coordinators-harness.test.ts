import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { waitFor } from "../../src/adapters/wait-for.js";
import { startCoordinators, type TestCoordinators } from "../helpers/coordinators.js";
import { socketRequest } from "../helpers/serve-process.js";

// The several-coordinators harness itself (test/helpers/coordinators.ts): two real `nixpool serve`
// on one PostgreSQL and one local pool, the second in its own network namespace, reaching the
// database over TCP through its link; cutting that link cuts its database and its TCP clients.

/** The addresses PostgreSQL sees connections to the database come from (null: its Unix socket). */
async function clientAddresses(h: TestCoordinators): Promise<(string | null)[]> {
  const client = new pg.Client({ connectionString: h.postgres.url() });
  await client.connect();
  try {
    const r = await client.query<{ client_addr: string | null }>(
      "SELECT client_addr::text AS client_addr FROM pg_stat_activity WHERE datname = $1",
      [h.database],
    );
    return r.rows.map((row) => row.client_addr?.replace(/\/32$/, "") ?? null);
  } finally {
    await client.end();
  }
}

/** Whether the coordinator's TCP API answers /api/whoami (a request cut or refused is false). */
async function whoamiAnswers(h: TestCoordinators, i: number): Promise<boolean> {
  const c = h.coordinators[i]!;
  try {
    const r = await h.request(c, "/api/whoami", { timeoutMs: 3000 });
    return r.status === 200;
  } catch {
    return false;
  }
}

const DATABASE_AWAY = /DATABASE_UNREACHABLE|database \S+ cannot be reached/;

describe("two coordinators on one PostgreSQL, one in its own network namespace", () => {
  let h: TestCoordinators;
  before(async () => {
    h = await startCoordinators({ count: 2, namespaced: [1] });
  });
  after(async () => {
    await h?.stop();
  });

  test("each answers /api/whoami on its own address and its own socket, both on the same database", async () => {
    const [host, spaced] = h.coordinators;
    assert.ok(host && spaced);
    assert.equal(host.netns, undefined);
    assert.ok(spaced.netns);
    assert.match(host.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(new URL(spaced.url).hostname, spaced.netns.address);
    for (const c of h.coordinators) {
      const r = await h.request(c, "/api/whoami");
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(JSON.parse(r.body), { user: "token", via: "token" });
      const sock = await socketRequest(c.socket, "GET", "/api/whoami");
      assert.deepEqual(JSON.parse(sock.body), { user: "root", uid: 0, via: "socket" });
      assert.match(
        c.log(),
        new RegExp(`history in postgresql://postgres@[\\d.]+:${h.postgres.port}/${h.database}`),
      );
    }
    assert.notEqual(host.socket, spaced.socket);
  });

  test("each reaches every builder of the pool (the namespaced one through its link)", async () => {
    for (const c of h.coordinators) {
      const up = await waitFor(
        async () => {
          const r = await h.request(c, "/api/builders");
          const list = JSON.parse(r.body) as { name: string; health: string }[];
          return list.length === 2 && list.every((b) => b.health === "up") ? list : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 200 },
      );
      assert.ok(up, `coordinator ${c.index}'s builders are not all up:\n${c.log()}`);
    }
  });

  test("the namespaced one reaches PostgreSQL over TCP from its namespace's address", async () => {
    const spaced = h.coordinators[1]!;
    assert.equal(new URL(spaced.databaseUrl).hostname, spaced.netns!.hostAddress);
    const from = await clientAddresses(h);
    assert.ok(from.includes(spaced.netns!.address), `connections from ${JSON.stringify(from)}`);
    assert.ok(from.includes("127.0.0.1"), `connections from ${JSON.stringify(from)}`);
  });

  test("a cut link: its API no longer answers over TCP and its log says the database is unreachable; restored, it answers again", async () => {
    const spaced = h.coordinators[1]!;
    const host = h.coordinators[0]!;
    assert.equal(await whoamiAnswers(h, 1), true);
    const logBefore = spaced.log().length;
    await spaced.cutLink();
    try {
      assert.equal(await whoamiAnswers(h, 1), false, "the namespaced coordinator still answers over TCP");
      // The other coordinator, on this machine, is not affected.
      assert.equal(await whoamiAnswers(h, 0), true);
      // Its Unix socket is a file: still reachable from this machine, it says the coordinator lives.
      const sock = await socketRequest(spaced.socket, "GET", "/api/whoami");
      assert.equal(sock.status, 200);
      const said = await waitFor(() => DATABASE_AWAY.exec(spaced.log().slice(logBefore)) ?? undefined, {
        timeoutMs: 120_000,
        intervalMs: 200,
      });
      assert.ok(said, `no DATABASE_UNREACHABLE in the log after the cut:\n${spaced.log().slice(logBefore)}`);
      assert.doesNotMatch(host.log(), DATABASE_AWAY);
    } finally {
      await spaced.restoreLink();
    }
    const back = await waitFor(async () => (await whoamiAnswers(h, 1)) || undefined, {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    assert.equal(back, true, "the namespaced coordinator does not answer after the link came back");
  });
});
