// The dispatcher's connection phase against peers the real nix-store cannot be made to play: each
// session is an in-process stand-in, and the build must end with a clear error, never hang.
import { fileInstallable, NO_FLAKE_OPTIONS } from "../../src/core/installable.js";
import { test } from "node:test";
import { join, resolve } from "node:path";
import { runDispatch } from "../../src/dispatch/run-dispatch.js";
import type { DispatchSession } from "../../src/dispatch/store-session.js";
import { sampleBuilder, SAMPLE_KEY } from "../helpers/builders.js";
import { withTempDir } from "../helpers/cli.js";
import { expectCode, within } from "../helpers/serve.js";

const FIXTURE = resolve(import.meta.dirname, "../fixtures/dispatch.nix");

const session = (over: Partial<DispatchSession> = {}): DispatchSession => ({
  queryValidPaths: () => Promise.resolve([]),
  queryClosure: (paths) => Promise.resolve([...paths]),
  buildDerivation: () => Promise.reject(new Error("not expected")),
  queryPathInfos: () => Promise.resolve([]),
  dumpStorePath: () => Promise.reject(new Error("not expected")),
  close: () => Promise.resolve(),
  kill: () => undefined,
  isClosed: false,
  ...over,
});

test("a builder whose first query fails while its slots are still opening is given up, not waited for", async () => {
  await withTempDir(async (dir) => {
    const build = runDispatch({
      builders: [
        sampleBuilder({
          hostKey: SAMPLE_KEY,
          maxJobs: 2,
          systems: [process.arch === "arm64" ? "aarch64-linux" : "x86_64-linux"],
        }),
      ],
      source: { installables: [fileInstallable(FIXTURE, ["ok1"])], flake: NO_FLAKE_OPTIONS },
      outLink: null,
      logDir: join(dir, "logs"),
      durationsFile: join(dir, "durations.json"),
      sessions: {
        // The transfer session opens and its query fails while a slot session is still opening.
        openBuilder: (o) => {
          if (o.role.kind === "transfer")
            return Promise.resolve(
              session({ queryValidPaths: () => Promise.reject(new Error("bad answer")) }),
            );
          if (o.role.slot === 1) return new Promise<DispatchSession>(() => undefined);
          return Promise.resolve(session());
        },
        openLocal: () => Promise.resolve(session()),
        transfer: () => Promise.resolve(0),
      },
    });
    await within(20_000, expectCode(build, "ALL_BUILDERS_DOWN", /b1 \(bad answer\)/));
  }, "nixpool-connect-");
});
