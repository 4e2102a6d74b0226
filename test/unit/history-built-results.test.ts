import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeRecord } from "../helpers/build-records.js";
import { HistoryStore, type StoredRecords } from "../../src/serve/history-store.js";

// What the binary cache reads of the coordinator's history (docs/cache.md): each finished build's
// derivations with their builds (builder, trust, NAR hash per output), new rows only.

const DRV = "/nix/store/0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-x.drv";
const HASH = `sha256:${"1".repeat(52)}`;

function records(builder: string, trust: "trusted" | "untrusted"): StoredRecords {
  return {
    startedAtMs: 0,
    wallMs: 1,
    builders: [{ name: builder, slots: 1 }],
    stats: {
      evalMs: 0,
      connectMs: 0,
      pathsUploaded: 0,
      pathsDownloaded: 0,
      bytesUploaded: 0,
      bytesDownloaded: 0,
      derivationsInClosure: 1,
      cpuMs: 0,
      maxRssMb: 0,
    },
    records: [
      makeRecord({
        drv: DRV,
        name: "x",
        builder,
        trust,
        builds: [{ builder, trust, narHashes: { out: HASH } }],
      }),
    ],
  };
}

test("builtResults: every derivation's builds of finished builds, then only rows added since", async () => {
  const dir = await mkdtemp(join(tmpdir(), "nixpool-history-"));
  const path = join(dir, "history.sqlite");
  const h = await HistoryStore.open({ engine: "sqlite", path, display: path });
  try {
    const summary = (id: string) => ({
      id,
      label: id,
      client: "alice",
      status: "succeeded" as const,
      submittedAt: "2026-12-07T10:00:00.000Z",
      counts: { total: 1, done: 1, failed: 0, running: 0, queued: 0 },
    });
    h.insertBuild(summary("b1"), 1, { derivations: [{ drv: DRV, output: "out" }], label: "b1" });
    h.updateBuild({ ...summary("b1"), finishedAt: "2026-12-07T10:01:00.000Z", derivations: [], outputs: [] });
    h.saveRecords("b1", records("t1", "trusted"));
    const all = await h.builtResults();
    assert.equal(all.length, 1);
    assert.equal(all[0]?.finishedAt, "2026-12-07T10:01:00.000Z");
    assert.deepEqual(all[0]?.records[0]?.builds, [
      { builder: "t1", trust: "trusted", narHashes: { out: HASH } },
    ]);
    const after = all[0]?.row ?? 0;
    assert.deepEqual(await h.builtResults(after), [], "nothing new");
    h.saveRecords("b2", records("u1", "untrusted"));
    const next = await h.builtResults(after);
    assert.equal(next.length, 1);
    assert.equal(next[0]?.finishedAt, null, "a build the history has no row of");
    assert.equal(next[0]?.records[0]?.builds?.[0]?.trust, "untrusted");
  } finally {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  }
});
