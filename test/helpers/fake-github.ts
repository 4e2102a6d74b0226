import { createServer, type Server } from "node:http";
import type { Socket } from "node:net";

/** How the fake answers: normally, not at all (down), too late, 429, a huge body, or 500. */
export type FakeGithubMode = "ok" | "slow" | "429" | "oversized" | "500";

/**
 * A real HTTP server that serves GET /HANDLE.keys like github.com, and can be made down
 * (listening socket closed: connection refused), slow, rate limited (429), oversized or broken.
 */
export interface FakeGithub {
  url: string;
  keys: Map<string, string>;
  mode: FakeGithubMode;
  /** Milliseconds a "slow" answer waits before it starts. */
  slowMs: number;
  /** Requests seen, in order (paths). */
  requests: string[];
  setKeys(handle: string, lines: readonly string[]): void;
  /** Closes the listening socket (connections are refused) or reopens it on the same port. */
  setDown(down: boolean): Promise<void>;
  stop(): Promise<void>;
}

export async function startFakeGithub(): Promise<FakeGithub> {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let server: Server;
  const fake: FakeGithub = {
    url: "",
    keys: new Map(),
    mode: "ok",
    slowMs: 10_000,
    requests: [],
    setKeys(handle, lines) {
      this.keys.set(handle.toLowerCase(), lines.map((l) => `${l}\n`).join(""));
    },
    async setDown(down) {
      if (down) await close();
      else if (!server.listening) await listen(port);
    },
    async stop() {
      await close();
    },
  };
  const handler = (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => {
    fake.requests.push(req.url ?? "");
    const m = /^\/([A-Za-z0-9-]+)\.keys$/.exec(req.url ?? "");
    const answer = () => {
      if (fake.mode === "429") {
        res.writeHead(429, { "retry-after": "60", "content-type": "text/plain" }).end("rate limited\n");
        return;
      }
      if (fake.mode === "500") {
        res.writeHead(500).end("boom\n");
        return;
      }
      if (fake.mode === "oversized") {
        // No content-length: the client must cap the body while reading it.
        res.writeHead(200, { "content-type": "text/plain" });
        const line = `ssh-ed25519 ${Buffer.alloc(51, 7).toString("base64")}\n`;
        res.end(line.repeat(20_000));
        return;
      }
      const body = m ? fake.keys.get((m[1] ?? "").toLowerCase()) : undefined;
      if (body === undefined) res.writeHead(404, { "content-type": "text/plain" }).end("Not Found");
      else res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end(body);
    };
    if (fake.mode === "slow") {
      const t = setTimeout(() => {
        timers.delete(t);
        if (!res.destroyed) answer();
      }, fake.slowMs);
      timers.add(t);
    } else answer();
  };
  const listen = (p: number) =>
    new Promise<number>((resolve, reject) => {
      server = createServer(handler);
      server.on("connection", (s) => {
        sockets.add(s);
        s.on("close", () => sockets.delete(s));
      });
      server.once("error", reject);
      server.listen(p, "127.0.0.1", () => {
        const a = server.address();
        resolve(typeof a === "object" && a ? a.port : 0);
      });
    });
  const close = () =>
    new Promise<void>((resolve) => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const s of sockets) s.destroy();
      if (!server.listening) return resolve();
      server.close(() => resolve());
    });
  const port = await listen(0);
  fake.url = `http://127.0.0.1:${port}`;
  return fake;
}
