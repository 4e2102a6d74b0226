import { test } from "node:test";
import assert from "node:assert/strict";
import type { Writable } from "node:stream";
import type { ServeSession } from "../../src/adapters/nix-serve-session.js";
import { createCacheApp } from "../../src/serve/cache/cache-app.js";
import type { CacheIndex, ResolvedPath } from "../../src/serve/cache/cache-index.js";
import { CacheStats } from "../../src/serve/cache/cache-stats.js";
import { CacheStores, LOCAL_HOLDER, NAR_SESSIONS } from "../../src/serve/cache/cache-stores.js";

// How the cache streams a NAR from its stores: the mechanics of createCacheApp + CacheStores, with
// stores that send a NAR of known bytes at a known pace (test/integration/cache.test.ts does the
// same against real Nix stores).

const SIZE = 8 << 20;
const CHUNK = 64 << 10;
const HASH = "a".repeat(32);
const NAR_HASH = "sha256:" + "0".repeat(52);
const PATH = `/nix/store/${HASH}-x`;
const URL = `/cache/nar/${HASH}-${"0".repeat(52)}.nar`;
/** The NAR: byte i is i % 251 (so that a range's bytes can be checked). */
const NAR = Buffer.alloc(SIZE);
for (let i = 0; i < SIZE; i++) NAR[i] = i % 251;
const expected = (from: number, to: number) => NAR.subarray(from, to + 1);

interface Dump {
  holder: string;
  /** Bytes the store read out (sent to the cache, in the range or not). */
  bytes: number;
}

/**
 * A store that sends the NAR in CHUNK pieces, one every `paceMs` (a healthy store), or none at all
 * (`stuck`: a store that stopped sending), with backpressure, until its session is killed.
 */
function fakeStore(holder: string, dumps: Dump[], o: { paceMs: number; stuck?: boolean }) {
  const session = {
    isClosed: false,
    kill() {
      this.isClosed = true;
    },
    close: () => Promise.resolve(),
    async dumpStorePath(_path: string, sink: Writable) {
      const rec: Dump = { holder, bytes: 0 };
      dumps.push(rec);
      for (let at = 0; at < SIZE; at += CHUNK) {
        do {
          await new Promise((r) => setTimeout(r, o.paceMs));
          if (session.isClosed) throw new Error(`${holder}: killed`);
        } while (o.stuck);
        const chunk = Buffer.from(NAR.subarray(at, at + CHUNK));
        rec.bytes += chunk.length;
        if (!sink.destroyed && !sink.writableEnded && !sink.write(chunk)) {
          await new Promise((r) => {
            sink.once("drain", r);
            sink.once("close", r);
          });
        }
      }
      return {};
    },
  };
  return session;
}

function setup(o: {
  holders: string[];
  up?: boolean;
  firstByteMs: number;
  pace?: Record<string, { paceMs: number; stuck?: boolean }>;
}) {
  const dumps: Dump[] = [];
  const opened: string[] = [];
  const sessions: ReturnType<typeof fakeStore>[] = [];
  const open = (holder: string) => {
    opened.push(holder);
    const s = fakeStore(holder, dumps, o.pace?.[holder] ?? { paceMs: 10 });
    sessions.push(s);
    return Promise.resolve(s as unknown as ServeSession);
  };
  const stores = new CacheStores({
    builders: () => [{ name: "b1", trust: "trusted", up: o.up ?? true }],
    openLocal: () => open(LOCAL_HOLDER),
    openBuilder: (name) => open(name),
  });
  const forgotten: string[] = [];
  const resolved: ResolvedPath = {
    info: {
      storePath: PATH,
      url: "",
      compression: "none",
      narHash: NAR_HASH,
      narSize: SIZE,
      references: [],
      sigs: [],
    },
    holders: o.holders,
  };
  const index = {
    resolve: () => Promise.resolve(resolved),
    forget: (hash: string) => void forgotten.push(hash),
  } as unknown as CacheIndex;
  const logs: string[] = [];
  const app = createCacheApp({
    index,
    stores,
    stats: new CacheStats(),
    auth: { apiToken: undefined, cacheToken: "c".repeat(43), open: true },
    priority: 30,
    log: (l) => void logs.push(l),
    firstByteMs: o.firstByteMs,
  });
  const env = { transport: "socket", incoming: { socket: { setTimeout: () => undefined } } };
  const get = async (init: RequestInit = {}) => app.request(URL, init, env);
  return { app, get, stores, dumps, opened, sessions, forgotten, logs };
}

test("a resume far into a NAR is answered by a healthy store whose skip outlasts firstByteMs; a stuck store is passed over", async () => {
  // The skip to 7 MiB reads 112 chunks, 10 ms or more apart: over 1.1 s without a byte in the range.
  const t = setup({
    holders: [LOCAL_HOLDER, "b1"],
    firstByteMs: 1000,
    pace: { [LOCAL_HOLDER]: { paceMs: 10 } },
  });
  const from = 7 << 20;
  const r = await t.get({ headers: { Range: `bytes=${from}-` } });
  assert.equal(
    r.status,
    206,
    await r
      .clone()
      .text()
      .then((s) => s.slice(0, 200)),
  );
  assert.equal(r.headers.get("content-range"), `bytes ${from}-${SIZE - 1}/${SIZE}`);
  assert.deepEqual(Buffer.from(await r.arrayBuffer()), expected(from, SIZE - 1));
  assert.deepEqual(t.logs, []);
  assert.deepEqual(t.forgotten, []);

  // A store that stops sending still is passed over after firstByteMs, for the next that holds it.
  const s = setup({
    holders: [LOCAL_HOLDER, "b1"],
    firstByteMs: 300,
    pace: { [LOCAL_HOLDER]: { paceMs: 10, stuck: true } },
  });
  const whole = await s.get();
  assert.equal(whole.status, 200);
  assert.deepEqual(Buffer.from(await whole.arrayBuffer()), expected(0, SIZE - 1));
  assert.equal(s.logs.length, 1);
  assert.match(s.logs[0] ?? "", /\(this machine\) could not send .*sent no byte for 300 ms/);
  assert.deepEqual(
    s.dumps.map((d) => d.holder),
    [LOCAL_HOLDER, "b1"],
  );
});

test("more NARs at once than a store has sessions all complete: a busy store queues them, it does not fail them", async () => {
  // Each NAR takes 128 chunks of 10 ms or more: the queued ones wait far longer than firstByteMs.
  const t = setup({ holders: [LOCAL_HOLDER], firstByteMs: 200 });
  const n = NAR_SESSIONS + 2;
  const bodies = await Promise.all(
    Array.from({ length: n }, async () => {
      const r = await t.get();
      return { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
    }),
  );
  for (const b of bodies) {
    assert.equal(b.status, 200);
    assert.deepEqual(b.body, expected(0, SIZE - 1));
  }
  assert.equal(t.dumps.length, n);
  assert.ok(t.opened.length <= NAR_SESSIONS, `${t.opened.length} sessions opened`);
  assert.deepEqual(t.logs, []);
  assert.deepEqual(t.forgotten, [], "a busy store's lookup is kept");
});

test("a request whose client left while it waited for a session never starts a dump", async () => {
  const t = setup({ holders: [LOCAL_HOLDER], firstByteMs: 200 });
  // Every session streams a NAR that nobody reads yet (held by backpressure).
  const held = await Promise.all(Array.from({ length: NAR_SESSIONS }, () => t.get()));
  for (const r of held) assert.equal(r.status, 200);
  // The next one waits: known once it asked the store for the NAR.
  let queued!: () => void;
  const asked = new Promise<void>((resolve) => (queued = resolve));
  const dumpNar = t.stores.dumpNar.bind(t.stores);
  t.stores.dumpNar = (...args) => {
    queued();
    return dumpNar(...args);
  };
  const client = new AbortController();
  const waiting = t.get({ signal: client.signal });
  await asked;
  client.abort();
  // The held downloads finish; their sessions become free, and the one that waited gets one.
  for (const r of held) assert.deepEqual(Buffer.from(await r.arrayBuffer()), expected(0, SIZE - 1));
  const answer = await waiting;
  assert.equal(answer.status, 503);
  assert.equal(t.dumps.length, NAR_SESSIONS, "no dump for the request that left");
  assert.deepEqual(t.forgotten, [], "a client that left says nothing of the store");
  // The session it got back is lent again.
  const next = await t.get();
  assert.deepEqual(Buffer.from(await next.arrayBuffer()), expected(0, SIZE - 1));
  assert.equal(t.opened.length, NAR_SESSIONS);
});

test("a short range ends the response at its last byte; the store's session is killed, a fresh one serves the next", async () => {
  const t = setup({ holders: [LOCAL_HOLDER], firstByteMs: 1000 });
  const r = await t.get({ headers: { Range: "bytes=0-1023" } });
  assert.equal(r.status, 206);
  assert.equal(r.headers.get("content-length"), "1024");
  assert.deepEqual(Buffer.from(await r.arrayBuffer()), expected(0, 1023));
  const first = t.sessions[0];
  assert.ok(first?.isClosed, "the session mid-answer is killed");
  // The rest of the NAR was not read (the store stopped at its next chunk).
  const read = t.dumps[0]?.bytes ?? 0;
  assert.ok(read < SIZE, `read ${read} of ${SIZE} bytes`);
  // A range in the middle, then the whole NAR: each on a fresh session.
  const mid = await t.get({ headers: { Range: `bytes=${3 << 20}-${(3 << 20) + 99}` } });
  assert.deepEqual(Buffer.from(await mid.arrayBuffer()), expected(3 << 20, (3 << 20) + 99));
  const whole = await t.get();
  assert.deepEqual(Buffer.from(await whole.arrayBuffer()), expected(0, SIZE - 1));
  assert.equal(t.opened.length, 3);
  // The whole NAR's session ended its answer: it stays open for the next.
  assert.equal(t.sessions[2]?.isClosed, false);
  assert.deepEqual(t.logs, []);
});

test("HEAD of a NAR answers as GET would: 503 when no store that holds it is up, without reading it", async () => {
  const down = setup({ holders: ["b1"], up: false, firstByteMs: 1000 });
  for (const method of ["HEAD", "GET"]) {
    const r = await down.get({ method });
    assert.equal(r.status, 503, method);
  }
  const up = setup({ holders: ["b1"], firstByteMs: 1000 });
  const head = await up.get({ method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), String(SIZE));
  assert.equal((await head.arrayBuffer()).byteLength, 0);
  assert.deepEqual(up.dumps, [], "HEAD reads no NAR");
});
