import { startTestPostgres, type TestPostgres } from "../helpers/postgres.js";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdtemp, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { waitFor } from "../../src/adapters/wait-for.js";
import { asNobody, CLI, makeTempDir, runCli } from "../helpers/cli.js";
import { graphArgs } from "../helpers/example-builds.js";
import { startTestPool, type TestPool } from "../helpers/pool.js";
import {
  socketRequest,
  socketRequestScript,
  startServe,
  type ServeProcess,
} from "../helpers/serve-process.js";

// A real `nixpool serve` process on a real local pool, reached over TCP (token, cookie) and its
// Unix socket (peer credentials), by curl-like requests and by `nixpool build` clients.

const json = (body: string) => JSON.parse(body) as Record<string, unknown>;

/** Starts `nixpool build ARGS` as a process in `cwd`; its output is collected. */
function startClient(
  stateDir: string,
  args: readonly string[],
  cwd: string,
  env: Record<string, string> = {},
) {
  let err = "";
  const proc = execa("node", [CLI, "--state-dir", stateDir, "build", ...args], {
    reject: false,
    cwd,
    stdin: "ignore",
    env,
  });
  proc.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const id = async () => {
    const found = await waitFor(() => /build (\S+) submitted to the coordinator/.exec(err)?.[1], {
      timeoutMs: 120_000,
    });
    if (!found) throw new Error(`the client never named its build:\n${err}`);
    return found;
  };
  return { proc, id, stderr: () => err };
}

// On both engines of the history: SQLite under the state directory, and a PostgreSQL started
// here (nixpool serve reads NIXPOOL_DATABASE_URL from its environment).
for (const engine of ["sqlite", "postgres"] as const)
  describe(
    `nixpool serve: API, auth and clients on a local pool (history in ${engine})`,
    { timeout: 900_000, concurrency: false },
    () => {
      let pool: TestPool;
      let serve: ServeProcess;
      let token: string;
      let work: { dir: string; cleanup: () => Promise<void> };
      let postgres: TestPostgres | undefined;

      before(async () => {
        if (engine === "postgres") {
          postgres = await startTestPostgres();
          process.env["NIXPOOL_DATABASE_URL"] = await postgres.createDatabase();
        }
        pool = await startTestPool(2, 2);
        work = await makeTempDir("nixpool-serve-work-");
        serve = await startServe(pool.stateDir);
        token = (await pool.cli(["serve", "token"])).stdout.trim();
      });
      after(async () => {
        await serve?.stop("SIGKILL");
        await work?.cleanup();
        await pool?.cleanup();
        delete process.env["NIXPOOL_DATABASE_URL"];
        await postgres?.stop();
      });

      const api = (path: string, init: RequestInit = {}) =>
        fetch(`${serve.url}${path}`, { redirect: "manual", ...init });
      const withToken = (h: Record<string, string> = {}) => ({ ...h, Authorization: `Bearer ${token}` });

      test("every remote client has its own token: its builds, its cancel rights, ?client=, revoked at once", async () => {
        const issue = async (name: string) => {
          const r = await pool.cli(["serve", "token", "--client", name]);
          assert.equal(r.exitCode, 0, r.stderr);
          return r.stdout.trim();
        };
        const alice = await issue("alice");
        const bob = await issue("bob");
        assert.notEqual(alice, bob);
        const as = (t: string) => ({ Authorization: `Bearer ${t}` });
        assert.deepEqual(json(await (await api("/api/whoami", { headers: as(alice) })).text()), {
          user: "alice",
          via: "token",
        });
        // Only a digest is kept: the state directory never holds the token itself.
        const { readFile } = await import("node:fs/promises");
        const stored = await readFile(join(pool.stateDir, "serve", "clients.json"), "utf8");
        assert.doesNotMatch(stored, new RegExp(alice));
        assert.match(stored, /"alice"/);

        // alice's build, through her own token: listed as hers, and bob may not cancel it.
        const client = startClient(
          join(work.dir, "alice-state"),
          [...graphArgs(4, { sleep: 3 }), "--no-out-link", "--coordinator", serve.url],
          work.dir,
          { NIXPOOL_COORDINATOR_TOKEN: alice },
        );
        const id = await client.id();
        const denied = await api(`/api/builds/${id}`, { method: "DELETE", headers: as(bob) });
        assert.equal(denied.status, 403);
        assert.equal(json(await denied.text())["code"], "BUILD_NOT_YOURS");
        assert.equal((await client.proc).exitCode, 0, client.stderr());
        const mine = json(
          await (await api("/api/builds?client=alice", { headers: withToken() })).text(),
        ) as unknown as {
          id: string;
          client: string;
        }[];
        assert.ok(mine.length >= 1 && mine.every((b) => b.client === "alice"), JSON.stringify(mine));
        assert.ok(mine.some((b) => b.id === id));
        const none = json(
          await (await api("/api/builds?client=bob", { headers: withToken() })).text(),
        ) as unknown as unknown[];
        assert.deepEqual(none, []);
        assert.equal((await api("/api/builds?client=%3Cx%3E", { headers: withToken() })).status, 400);

        // A client's own token reads the pool's binary cache too.
        const info = await api("/cache/nix-cache-info", { headers: as(bob) });
        assert.equal(info.status, 200, await info.clone().text());
        assert.match(await info.text(), /StoreDir: \/nix\/store/);
        assert.equal((await api("/cache/nix-cache-info", { headers: as("not-a-token") })).status, 401);

        const listed = await pool.cli(["serve", "token", "--list", "--json"]);
        assert.deepEqual(
          (JSON.parse(listed.stdout) as { clients: { name: string }[] }).clients.map((c) => c.name),
          ["alice", "bob"],
        );
        assert.doesNotMatch(listed.stdout, new RegExp(`${alice}|${bob}`), "tokens are never listed");
        const revoked = await pool.cli(["serve", "token", "--client", "alice", "--revoke"]);
        assert.equal(revoked.exitCode, 0, revoked.stderr);
        assert.equal((await api("/api/whoami", { headers: as(alice) })).status, 401, "refused at once");
        assert.equal((await api("/api/whoami", { headers: as(bob) })).status, 200);
        const again = await pool.cli(["serve", "token", "--client", "alice", "--revoke"]);
        assert.equal(again.exitCode, 2);
        assert.match(again.stderr, /CLIENT_UNKNOWN|No client alice/);
        const badName = await pool.cli(["serve", "token", "--client", "token"]);
        assert.equal(badName.exitCode, 2);
      });

      test("TCP: no token or a wrong one is 401 with a code; the right one is accepted", async () => {
        for (const headers of [
          {},
          { Authorization: "Bearer nope" },
          { Authorization: "Basic eDp5" },
          { Authorization: "Bearer" },
        ]) {
          const r = await api("/api/builders", { headers });
          assert.equal(r.status, 401, JSON.stringify(headers));
          assert.equal(json(await r.text())["code"], "API_UNAUTHORIZED");
          assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer/);
        }
        const r = await api("/api/builders", { headers: withToken() });
        assert.equal(r.status, 200);
        const names = ((await r.json()) as { name: string }[]).map((b) => b.name).sort();
        assert.deepEqual(names, ["local1", "local2"]);
        const who = (await (await api("/api/whoami", { headers: withToken() })).json()) as Record<
          string,
          unknown
        >;
        assert.deepEqual(who, { user: "token", via: "token" });
        // The token is never printed by the service.
        assert.ok(!serve.stdout().includes(token) && !serve.stderr().includes(token));
        // The history's engine, as the service names it.
        assert.match(
          serve.stderr(),
          engine === "postgres"
            ? /history in postgresql:\/\/postgres@127\.0\.0\.1:\d+\/t/
            : /history in \/\S+\/serve\/history\.sqlite/,
        );
      });

      test("a browser: /?token= sets an HttpOnly SameSite=Strict cookie (not the token) and redirects", async () => {
        const bad = await api("/?token=wrong");
        assert.equal(bad.status, 401);
        const r = await api(`/builds?x=1&token=${token}`);
        assert.equal(r.status, 302);
        assert.equal(r.headers.get("location"), "/builds?x=1");
        const setCookie = r.headers.get("set-cookie") ?? "";
        assert.match(setCookie, /HttpOnly/i);
        assert.match(setCookie, /SameSite=Strict/i);
        assert.ok(!setCookie.includes(token), "the cookie is not the token");
        const cookie = setCookie.split(";")[0] ?? "";
        const page = await api("/", { headers: { Cookie: cookie } });
        assert.equal(page.status, 200);
        assert.match(page.headers.get("content-type") ?? "", /text\/html/);
        assert.equal((await api("/api/builds", { headers: { Cookie: cookie } })).status, 200);
        assert.equal((await api("/api/builds", { headers: { Cookie: `${cookie}x` } })).status, 401);
        const crossSite = await api("/api/builds", {
          method: "POST",
          headers: { Cookie: cookie, Origin: "http://evil.example", "Content-Type": "application/json" },
          body: "{}",
        });
        assert.equal(crossSite.status, 403);
        assert.equal(json(await crossSite.text())["code"], "API_FORBIDDEN");
      });

      test("bad requests get 4xx with a JSON code, and the service keeps serving", async () => {
        const post = (body: string, type = "application/json") =>
          api("/api/builds", { method: "POST", headers: withToken({ "Content-Type": type }), body });
        const cases: [Promise<Response>, number][] = [
          [post("{not json"), 400],
          [post("{}"), 400],
          [post("[]"), 400],
          [post("null"), 400],
          [post(JSON.stringify({ derivations: [{ drv: "/etc/passwd", output: "out" }], label: "x" })), 400],
          [post(JSON.stringify({ derivations: [], label: "x" })), 400],
          [
            post(
              JSON.stringify({
                derivations: [{ drv: `/nix/store/${"a".repeat(32)}-x.drv`, output: "out" }],
                label: "x",
                evil: 1,
              }),
            ),
            400,
          ],
          [
            post(
              JSON.stringify({
                derivations: [{ drv: `/nix/store/${"a".repeat(32)}-x.drv`, output: "o\nut" }],
                label: "x",
              }),
            ),
            400,
          ],
          [post(`{"label":"${"x".repeat(5 * 1024 * 1024)}"}`), 413],
          [post("{}", "text/plain"), 415],
          [api("/api/builds/nonexistent", { headers: withToken() }), 404],
          [api("/api/builds/bad%00id", { headers: withToken() }), 400],
          [api(`/api/builds/${"x".repeat(65)}`, { headers: withToken() }), 400],
          [api("/api/builds?limit=abc", { headers: withToken() }), 400],
          [api("/api/builds?limit=-1", { headers: withToken() }), 400],
          [api("/api/builds?status=bogus", { headers: withToken() }), 400],
          [api("/api/builds?what=1", { headers: withToken() }), 400],
          [api("/api/builds/nonexistent", { method: "DELETE", headers: withToken() }), 404],
          [api("/api/builds/nonexistent/log/..%2F..%2Fetc%2Fpasswd", { headers: withToken() }), 404],
          [api("/api/events?build=nonexistent", { headers: withToken() }), 404],
          [api("/api/nothing", { headers: withToken() }), 404],
        ];
        for (const [i, [p, status]] of cases.entries()) {
          const r = await p;
          const body = await r.text();
          assert.equal(r.status, status, `case ${i}: ${body.slice(0, 200)}`);
          const parsed = json(body);
          assert.match(String(parsed["code"]), /^(API_|COORDINATOR_)/, `case ${i}`);
          assert.equal(typeof parsed["message"], "string");
        }
        const sock = await socketRequest(serve.socket, "POST", "/api/builds", "{]");
        assert.equal(sock.status, 400);
        assert.equal((await api("/api/builders", { headers: withToken() })).status, 200);
      });

      test("the socket: the kernel's peer credentials name the user (root here)", async () => {
        const r = await socketRequest(serve.socket, "GET", "/api/whoami");
        assert.equal(r.status, 200);
        assert.deepEqual(json(r.body), { user: "root", uid: 0, via: "socket" });
      });

      test("a client found through the socket builds what a local build builds, with the same report", async () => {
        const args = graphArgs(3);
        const remote = await runCli(pool.stateDir, ["build", ...args, "--json"], {
          cwd: work.dir,
        });
        assert.equal(remote.exitCode, 0, remote.stderr);
        const r = json(remote.stdout);
        assert.match(String(r["buildId"]), /^[A-Za-z0-9_-]+$/);
        const outputs = r["outputs"] as string[];
        assert.equal(outputs.length, 1);
        assert.equal(await readlink(join(work.dir, "result")), outputs[0]);
        const derivations = r["derivations"] as { name: string; builder: string; status: string }[];
        assert.equal(derivations.length, 4);
        for (const d of derivations) {
          assert.ok(["local1", "local2"].includes(d.builder), JSON.stringify(d));
          assert.equal(d.status, "built");
        }
        // The same build here: the same output path.
        const local = await runCli(
          pool.stateDir,
          ["build", ...args, "--json", "--no-coordinator", "--no-out-link"],
          {
            cwd: work.dir,
          },
        );
        assert.equal(local.exitCode, 0, local.stderr);
        const l = json(local.stdout);
        assert.deepEqual(l["outputs"], outputs);
        // A build of the same shape here (a fresh seed: this one's outputs are all local by now):
        // the same --json (less the build id), the same derivations.
        const fresh = await runCli(pool.stateDir, [
          "build",
          ...graphArgs(3),
          "--json",
          "--no-coordinator",
          "--no-out-link",
        ]);
        assert.equal(fresh.exitCode, 0, fresh.stderr);
        const f = json(fresh.stdout);
        assert.deepEqual(
          Object.keys(r)
            .filter((k) => k !== "buildId")
            .sort(),
          Object.keys(f).sort(),
        );
        const shape = (ds: { name: string; status: string; attempts: number }[]) =>
          ds.map((d) => [d.name, d.status, d.attempts]);
        assert.deepEqual(shape(derivations as never), shape(f["derivations"] as never));
        assert.deepEqual(
          Object.keys((derivations[0] ?? {}) as object).sort(),
          Object.keys((f["derivations"] as object[])[0] ?? {}).sort(),
        );
        // The report of a text run: the table and outputs a local build prints.
        const text = await runCli(pool.stateDir, ["build", ...graphArgs(2), "-o", "res2"], { cwd: work.dir });
        assert.equal(text.exitCode, 0, text.stderr);
        assert.match(
          text.stdout,
          /DERIVATION\s+BUILDER\s+ATTEMPTS\s+QUEUED\s+UPLOAD\s+BUILD\s+DOWNLOAD\s+STATUS/,
        );
        assert.match(
          text.stdout,
          /3 built, 0 cached, 0 retried in .* by nixpool's dispatcher \(the coordinator at unix:/,
        );
        assert.match(text.stdout, /Outputs \(GC root res2\):\n {2}\/nix\/store\//);
        assert.match(text.stderr, /build \S+ submitted to the coordinator at unix:/);
      });

      test("Ctrl-C cancels only the client's own build; another client's continues", async () => {
        const a = startClient(pool.stateDir, [...graphArgs(4, { sleep: 4 }), "--no-out-link"], work.dir);
        const b = startClient(pool.stateDir, [...graphArgs(4, { sleep: 2 }), "--no-out-link"], work.dir);
        const [idA, idB] = await Promise.all([a.id(), b.id()]);
        a.proc.kill("SIGINT");
        const ra = await a.proc;
        assert.equal(ra.exitCode, 130, a.stderr());
        const rb = await b.proc;
        assert.equal(rb.exitCode, 0, b.stderr());
        const detail = (id: string) =>
          api(`/api/builds/${id}`, { headers: withToken() }).then(
            (r) => r.json() as Promise<Record<string, unknown>>,
          );
        assert.equal((await detail(idA))["status"], "cancelled");
        assert.equal((await detail(idB))["status"], "succeeded");
        // A finished build's stream: its state, then the end (with the report), then it closes.
        const events = await (await api(`/api/events?build=${idB}`, { headers: withToken() })).text();
        assert.match(events, /event: build\ndata: \{"type":"build"/);
        assert.match(events, /event: end\ndata: \{"type":"end","build":\{.*"report":\{.*"records":\[\{"drv"/);
      });

      test("an unreachable or unauthorised coordinator is named (never the token), with a hint", async () => {
        const gone = await runCli(pool.stateDir, [
          "build",
          ...graphArgs(1),
          "--coordinator",
          "http://127.0.0.1:9",
        ]);
        assert.equal(gone.exitCode, 1);
        assert.match(
          gone.stderr,
          /COORDINATOR_UNREACHABLE|coordinator at http:\/\/127\.0\.0\.1:9 does not answer/,
        );
        assert.match(gone.stderr, /hint: /);
        const denied = await runCli(pool.stateDir, ["build", ...graphArgs(1), "--coordinator", serve.url], {
          env: { NIXPOOL_COORDINATOR_TOKEN: "not-the-token" },
        });
        assert.equal(denied.exitCode, 1);
        assert.match(denied.stderr, new RegExp(`coordinator at ${serve.url.replace(/[.]/g, "\\.")} refused`));
        assert.match(denied.stderr, /hint: .*NIXPOOL_COORDINATOR_TOKEN/);
        assert.ok(!denied.stderr.includes("not-the-token"));
        // With the state directory's token (read by the client itself), TCP works.
        const ok = await runCli(pool.stateDir, [
          "build",
          ...graphArgs(1),
          "--coordinator",
          serve.url,
          "--json",
          "--no-out-link",
        ]);
        assert.equal(ok.exitCode, 0, ok.stderr);
        assert.ok(!ok.stdout.includes(token) && !ok.stderr.includes(token));
      });

      test("a non-loopback --listen without a token is refused (exit 2)", async () => {
        const r = await pool.cli(["serve", "--listen", "0.0.0.0:0", "--no-token"]);
        assert.equal(r.exitCode, 2, r.stderr);
        assert.match(r.stderr, /anyone who reaches 0\.0\.0\.0/);
        assert.match(r.stderr, /hint: .*--listen 127\.0\.0\.1:0/);
      });

      test("another user on the socket is identified as that user, and may not cancel root's build; SIGTERM drains", async () => {
        await serve.stop("SIGTERM");
        const sockDir = await mkdtemp(join(tmpdir(), "nixpool-sock-"));
        await chmod(sockDir, 0o755);
        const socket = join(sockDir, "api.sock");
        try {
          serve = await startServe(pool.stateDir, ["--socket", socket, "--grace", "2m"]);
          const asUser = async (method: string, path: string) => {
            const [cmd = "", ...argv] = asNobody(socketRequestScript(socket, method, path));
            const r = await execa(cmd, argv);
            return JSON.parse(r.stdout) as { status: number; body: string };
          };
          const who = await asUser("GET", "/api/whoami");
          assert.equal(who.status, 200);
          assert.deepEqual(json(who.body), { user: "nobody", uid: 65534, via: "socket" });
          // A local user shares the store: it may ask what it holds, never import into it.
          const imported = await asUser("POST", "/api/store/import");
          assert.equal(imported.status, 403, imported.body);
          assert.equal(json(imported.body)["code"], "API_FORBIDDEN");
          // root's build, through this socket; nobody may not cancel it.
          const client = startClient(
            pool.stateDir,
            [...graphArgs(4, { sleep: 3 }), "--no-out-link", "--coordinator", `unix:${socket}`],
            work.dir,
          );
          const id = await client.id();
          const refused = await asUser("DELETE", `/api/builds/${id}`);
          assert.equal(refused.status, 403, refused.body);
          assert.equal(json(refused.body)["code"], "BUILD_NOT_YOURS");
          // SIGTERM while it runs: no new builds (503), the running one finishes, then the service exits 0.
          process.kill(serve.pid ?? 0, "SIGTERM");
          const draining = await waitFor(
            async () => {
              const r = await socketRequest(
                socket,
                "POST",
                "/api/builds",
                JSON.stringify({
                  derivations: [{ drv: `/nix/store/${"a".repeat(32)}-x.drv`, output: "out" }],
                  label: "late",
                }),
              );
              return r.status === 503 ? r : undefined;
            },
            { timeoutMs: 10_000 },
          );
          assert.ok(draining, "POST answers 503 while draining");
          assert.equal(json(draining.body)["code"], "COORDINATOR_DRAINING");
          const built = await client.proc;
          assert.equal(built.exitCode, 0, client.stderr());
          assert.equal(await serve.exited(), 0, serve.stderr());
          assert.match(serve.stderr(), /draining/);
        } finally {
          await rm(sockDir, { recursive: true, force: true });
        }
      });
    },
  );
