import { test } from "node:test";
import assert from "node:assert/strict";
import { SessionPool } from "../../src/dispatch/session-pool.js";

interface Plain {
  id: number;
  isClosed: boolean;
}

test("a session that ended while lent is never lent again; a fresh one takes its place", async () => {
  let n = 0;
  const pool = new SessionPool<Plain>(
    () => Promise.resolve({ id: ++n, isClosed: false }),
    1,
    () => assert.fail("nothing to discard"),
  );
  await pool.with((s) => {
    assert.equal(s.id, 1);
    s.isClosed = true; // a transfer into it was cut
    return Promise.resolve();
  });
  assert.equal(await pool.with((s) => Promise.resolve(s.id)), 2);
  // The same while another user waits for the only session.
  let release!: () => void;
  const first = pool.with(
    (s) =>
      new Promise<number>((resolve) => {
        release = () => {
          s.isClosed = true;
          resolve(s.id);
        };
      }),
  );
  const second = pool.with((s) => Promise.resolve(s.id));
  await new Promise((r) => setImmediate(r));
  release();
  assert.deepEqual(await Promise.all([first, second]), [2, 3]);
  // Sessions that ended are forgotten (a long-lived pool does not keep every one it lost).
  assert.deepEqual(
    pool.drain().map((s) => s.id),
    [3],
  );
});

test("after drain, a session that ends while others wait is not replaced: the waiters fail", async () => {
  let n = 0;
  const pool = new SessionPool<Plain>(
    () => Promise.resolve({ id: ++n, isClosed: false }),
    1,
    () => assert.fail("nothing to discard"),
  );
  let release!: () => void;
  const first = pool.with(
    (s) =>
      new Promise<void>((resolve) => {
        release = () => {
          s.isClosed = true;
          resolve();
        };
      }),
  );
  const waiting = pool.with((s) => Promise.resolve(s.id));
  await new Promise((r) => setImmediate(r));
  pool.drain();
  release();
  await first;
  await assert.rejects(waiting, /session pool closed/);
  assert.equal(n, 1, "no session opened after drain");
});

test("a session that finishes opening after drain is discarded, never lent or kept", async () => {
  let open!: (s: Plain) => void;
  const discarded: number[] = [];
  const pool = new SessionPool<Plain>(
    () => new Promise<Plain>((resolve) => (open = resolve)),
    1,
    (s) => discarded.push(s.id),
  );
  const user = pool.with((s) => Promise.resolve(s.id));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(pool.drain(), [], "still opening: nothing to close yet");
  open({ id: 7, isClosed: false });
  await assert.rejects(user, /session pool closed/);
  assert.deepEqual(discarded, [7]);
});
