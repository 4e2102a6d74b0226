import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServeSession } from "../../src/adapters/nix-serve-session.js";
import { secretKeyFromSeed } from "../../src/core/binary-cache/signing-key.js";
import { appendResultRecords } from "../../src/dispatch/result-records.js";
import { CacheIndex, MISS_LOOK_EVERY_MS } from "../../src/serve/cache/cache-index.js";
import { CacheStores, LOCAL_HOLDER } from "../../src/serve/cache/cache-stores.js";
import { RecordedBuilds } from "../../src/serve/cache/recorded-builds.js";

// What a hash the cache does not know costs (a mass query of paths the pool does not have), and
// how soon a path recorded meanwhile is found: a real results file, a store that holds the path.

const HASH = "1".repeat(32);
const PATH = `/nix/store/${HASH}-built-now`;
const NAR_HASH = `sha256:${"2".repeat(52)}`;
const absent = (i: number) => String(i).padStart(32, "0");

test("misses look at the results at most once per MISS_LOOK_EVERY_MS; a path recorded meanwhile is found once that has passed", async () => {
  const dir = await mkdtemp(join(tmpdir(), "nixpool-cache-index-"));
  try {
    const resultsFile = join(dir, "results.jsonl");
    let now = 0;
    let looks = 0;
    const recorded = new RecordedBuilds(
      {
        builtResults: () => {
          looks++;
          return Promise.resolve([]);
        },
      },
      () => undefined,
    );
    const session = {
      isClosed: false,
      kill: () => undefined,
      close: () => Promise.resolve(),
      queryPathInfos: (paths: string[]) =>
        Promise.resolve(
          paths
            .filter((p) => p === PATH)
            .map((path) => ({
              path,
              deriver: "",
              references: [],
              downloadSize: 100,
              narSize: 100,
              narHash: NAR_HASH,
              ca: "",
              sigs: [],
            })),
        ),
    };
    const stores = new CacheStores({
      builders: () => [{ name: "b1", trust: "trusted", up: true }],
      openLocal: () => Promise.resolve(session as unknown as ServeSession),
      openBuilder: () => Promise.reject(new Error("b1 is not reached in this test")),
    });
    const index = new CacheIndex({
      resultsFile,
      key: secretKeyFromSeed("unit-1", new Uint8Array(32)),
      stores,
      log: () => undefined,
      recorded,
      clock: () => now,
    });

    // 500 hashes nobody has, in a row and at once: the first look of all, then one for the misses.
    for (let i = 0; i < 250; i++) assert.equal(await index.resolve(absent(i)), undefined);
    const together = await Promise.all(Array.from({ length: 250 }, (_, i) => index.resolve(absent(250 + i))));
    assert.ok(together.every((r) => r === undefined));
    assert.equal(looks, 2);

    // A build records the path now: within the bound it may still be a miss…
    await appendResultRecords(resultsFile, [
      {
        v: 1,
        output: PATH,
        outputName: "out",
        drv: `/nix/store/${"3".repeat(32)}-built-now.drv`,
        builder: "b1",
        trust: "trusted",
        narHash: NAR_HASH,
        builtAt: new Date(0).toISOString(),
      },
    ]);
    now = MISS_LOOK_EVERY_MS - 1;
    assert.equal(await index.resolve(HASH), undefined);
    assert.equal(looks, 2);
    // …and from the bound on it is found (from this machine's store, which holds it).
    now = MISS_LOOK_EVERY_MS;
    const found = await index.resolve(HASH);
    assert.equal(looks, 3);
    assert.equal(found?.info.storePath, PATH);
    assert.deepEqual(found?.holders, [LOCAL_HOLDER]);
    await stores.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
