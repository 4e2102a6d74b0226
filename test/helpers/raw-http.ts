import { connect, type Socket } from "node:net";

/**
 * An HTTP client on a raw TCP socket (node:net), for clients no library would be: one that sends
 * its headers a byte at a time, promises a body it never sends, or stops reading a response.
 */
export interface RawConnection {
  socket: Socket;
  /** Every byte received so far. */
  received: () => Buffer;
  /** Settles when the socket is closed (by either side), with the error that closed it, if any. */
  closed: Promise<{ error: string | undefined }>;
  isClosed: () => boolean;
}

export function rawConnect(port: number, host = "127.0.0.1"): RawConnection {
  const socket = connect(port, host);
  const chunks: Buffer[] = [];
  let error: string | undefined;
  let done = false;
  socket.on("data", (d: Buffer) => chunks.push(d));
  socket.on("error", (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
  const closed = new Promise<{ error: string | undefined }>((resolve) =>
    socket.once("close", () => {
      done = true;
      resolve({ error });
    }),
  );
  return { socket, received: () => Buffer.concat(chunks), closed, isClosed: () => done };
}

/** Sends `head` (request line and headers, CRLF-separated, without the final blank line) one byte every `everyMs`, forever: a slowloris. */
export function dribble(conn: RawConnection, head: string, everyMs: number): void {
  let i = 0;
  const timer = setInterval(() => {
    if (conn.isClosed() || conn.socket.destroyed) return clearInterval(timer);
    // After the head, header lines without end: the blank line never comes.
    const line = "X-Slow: s\r\n";
    conn.socket.write(i < head.length ? head.charAt(i) : line.charAt((i - head.length) % line.length));
    i++;
  }, everyMs);
  void conn.closed.then(() => clearInterval(timer));
}

/** The status code of the first response in what a connection received (0: none). */
export function statusOf(received: Buffer): number {
  return Number(/^HTTP\/1\.1 (\d{3}) /.exec(received.subarray(0, 64).toString("latin1"))?.[1] ?? 0);
}

/** Sends one whole request and waits for the server to close the connection: what it received. */
export async function rawExchange(port: number, request: string | Buffer): Promise<Buffer> {
  const conn = rawConnect(port);
  conn.socket.write(request);
  await conn.closed;
  return conn.received();
}
