import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { isNixpoolError, type NixpoolError } from "../../src/core/errors.js";

/** Collects what a session streams into it. */
export class Collect extends Writable {
  chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void) {
    this.chunks.push(chunk);
    cb();
  }
  bytes() {
    return Buffer.concat(this.chunks);
  }
}

/** Asserts that `p` rejects with a NixpoolError of `code` (and a message matching `pattern`). */
export async function expectCode(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<NixpoolError> {
  let caught: NixpoolError | undefined;
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isNixpoolError(e), String(e));
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    caught = e;
    return true;
  });
  return caught!;
}

/** Rejects when `p` has not settled within `ms`: a session must never hang. */
export async function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms: the session hangs`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
