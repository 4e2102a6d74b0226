import { connect, createServer, type Socket } from "node:net";

/** A TCP forwarder in front of a coordinator: the first URL of a client that loses it mid-build. */
export interface TcpForwarder {
  /** http://127.0.0.1:PORT */
  url: string;
  /** Connections accepted so far. */
  accepted: () => number;
  /** Stops listening and resets every connection it carries (both sides), as a dead machine would. */
  kill: () => Promise<void>;
}

/**
 * Listens on 127.0.0.1:0 (or on the Unix socket `listenPath`) and forwards each connection to
 * `target` (a URL with a host and port: http://HOST:PORT, postgresql://HOST:PORT/…).
 */
export async function startTcpForwarder(target: string, listenPath?: string): Promise<TcpForwarder> {
  const to = new URL(target);
  const open = new Set<Socket>();
  let accepted = 0;
  const server = createServer((inbound) => {
    accepted++;
    const outbound = connect(Number(to.port), to.hostname);
    for (const s of [inbound, outbound]) {
      open.add(s);
      s.once("close", () => {
        open.delete(s);
        inbound.destroy();
        outbound.destroy();
      });
      s.on("error", () => undefined);
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    if (listenPath !== undefined) server.listen(listenPath, resolve);
    else server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  if (address === null) throw new Error("the forwarder does not listen");
  return {
    url: typeof address === "string" ? `unix:${address}` : `http://127.0.0.1:${address.port}`,
    accepted: () => accepted,
    kill: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // A reset where there is one (TCP); a Unix socket has none, it is closed.
      for (const s of [...open]) {
        if (s.remoteFamily === undefined) s.destroy();
        else s.resetAndDestroy();
      }
      await closed;
    },
  };
}

/** An http://127.0.0.1:PORT where nothing listens (a port this process bound, then let go). */
export async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no TCP port");
  return `http://127.0.0.1:${address.port}`;
}

/** A TCP port that accepts connections and never answers on them (a hung machine); close() lets them go. */
export async function startBlackHole(): Promise<{ url: string; close: () => Promise<void> }> {
  const held = new Set<Socket>();
  const server = createServer((s) => {
    held.add(s);
    s.on("error", () => undefined);
    s.once("close", () => held.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP port");
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of [...held]) s.destroy();
      await closed;
    },
  };
}
