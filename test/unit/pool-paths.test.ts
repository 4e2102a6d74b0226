import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Trust } from "../../src/core/builder.js";
import { LOCAL } from "../../src/core/dispatch/scheduler.js";
import type { PathInfo } from "../../src/core/nix-serve/index.js";
import type { BuilderLink } from "../../src/dispatch/builder-link.js";
import { PoolPaths } from "../../src/dispatch/pool-paths.js";
import { appendResultRecords } from "../../src/dispatch/result-records.js";
import type { SessionPool } from "../../src/dispatch/session-pool.js";
import { StorePlace } from "../../src/dispatch/store-place.js";
import type { DispatchSession } from "../../src/dispatch/store-session.js";

const P = (c: string, name: string) => `/nix/store/${c.repeat(32)}-${name}`;
const H = (c: string) => `sha256:${c.repeat(52)}`;

/** A store that holds `held` (path → its NAR hash), answering as a transfer session does. */
function store(held: Record<string, string>): DispatchSession {
  return {
    isClosed: false,
    queryValidPaths: (paths: readonly string[]) => Promise.resolve(paths.filter((p) => p in held)),
    queryPathInfos: (paths: readonly string[]) =>
      Promise.resolve(
        paths
          .filter((p) => p in held)
          .map((p): PathInfo => ({
            path: p,
            deriver: "",
            references: [],
            downloadSize: 1,
            narSize: 1,
            narHash: held[p] as string,
            ca: "",
            sigs: [],
          })),
      ),
  } as unknown as DispatchSession;
}

function link(name: string, trust: Trust, held: Record<string, string>): BuilderLink {
  return {
    name,
    builder: { name, trust },
    place: new StorePlace(name),
    transfer: store(held),
    lostReason: undefined,
  } as unknown as BuilderLink;
}

test("an untrusted builder's copy counts only when a trusted builder built that result to the same NAR hash", async () => {
  const dir = await mkdtemp(join(tmpdir(), "nixpool-pool-paths-"));
  try {
    const resultsFile = join(dir, "results.jsonl");
    const verified = P("a", "verified");
    const tampered = P("b", "tampered");
    const untrustedBuilt = P("c", "untrusted-built");
    const source = P("d", "source");
    const onTrusted = P("f", "on-trusted");
    const record = (output: string, builder: string, trust: Trust, narHash: string) => ({
      v: 1 as const,
      output,
      outputName: "out",
      drv: `${output}.drv`,
      builder,
      trust,
      narHash,
      builtAt: "2026-12-07T20:00:00.000Z",
    });
    await appendResultRecords(resultsFile, [
      record(verified, "t1", "trusted", H("1")),
      record(tampered, "t1", "trusted", H("2")),
      record(untrustedBuilt, "u1", "untrusted", H("3")),
    ]);
    const links = new Map([
      ["t1", link("t1", "trusted", { [onTrusted]: H("9") })],
      [
        "u1",
        link("u1", "untrusted", {
          [verified]: H("1"),
          [tampered]: H("6"),
          [untrustedBuilt]: H("3"),
          [source]: H("4"),
        }),
      ],
    ]);
    const local = {
      with: <T>(fn: (s: DispatchSession) => Promise<T>) => fn(store({})),
    } as unknown as SessionPool<DispatchSession>;
    const all = [verified, tampered, untrustedBuilt, source, onTrusted];
    const paths = new PoolPaths(links, local, new StorePlace(LOCAL), resultsFile);
    assert.deepEqual(
      Object.fromEntries(await paths.locate(all)),
      { [verified]: "u1", [onTrusted]: "t1" },
      "only the verified copy and the trusted builder's path",
    );
    // Asked again (the untrusted builder's answers are now known): the same.
    assert.deepEqual(Object.fromEntries(await paths.locate(all)), { [verified]: "u1", [onTrusted]: "t1" });
    // Without the results file, an untrusted builder holds nothing for the pool.
    const none = new PoolPaths(links, local, new StorePlace(LOCAL));
    assert.deepEqual(Object.fromEntries(await none.locate(all)), { [onTrusted]: "t1" });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
