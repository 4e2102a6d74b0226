import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import {
  DEFAULT_BUILD_OPTIONS,
  encodeClientHello,
  encodeRequest,
  type BuildResult,
} from "../../src/core/nix-serve/index.js";
import { runGatewaySession, type GatewayStore } from "../../src/serve/gateway/gateway-session.js";
import type { GatewayBuilds } from "../../src/serve/gateway/gateway-build.js";

const P = (c: string, name: string) => `/nix/store/${c.repeat(32)}-${name}`;
const drvPath = P("a", "hello.drv");
const drv = {
  outputs: new Map([["out", { path: P("b", "hello"), hashAlgo: "", hash: "" }]]),
  inputSrcs: [P("d", "dep")],
  platform: "x86_64-linux",
  builder: "/bin/sh",
  args: ["-c", "echo hi > $out"],
  env: new Map([["out", P("b", "hello")]]),
};

/** This machine's store holding every path asked about (the inputs are there). */
const everything = {
  queryValidPaths: (paths: readonly string[]) => Promise.resolve([...paths]),
} as unknown as GatewayStore;

test("a client that goes away during a BuildDerivation ends its session and its build in the pool is cancelled", async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  output.resume();
  let aborted = false;
  const builds: GatewayBuilds = {
    // A build that runs until it is cancelled (a long one, or one waiting for a slot).
    build: (_drvPath, _drv, _options, _onLog, signal) =>
      new Promise<BuildResult>((resolve) => {
        signal?.addEventListener("abort", () => {
          aborted = true;
          resolve({
            status: 2,
            statusName: "MiscFailure",
            errorMsg: "cancelled",
            timesBuilt: 0,
            isNonDeterministic: false,
            startTime: 0,
            stopTime: 0,
            builtOutputs: [],
          });
        });
      }),
  };
  const lines: string[] = [];
  const session = runGatewaySession({
    input,
    output,
    log: (l) => lines.push(l),
    store: Promise.resolve(everything),
    builds: Promise.resolve(builds),
  });
  input.write(encodeClientHello(0x207));
  input.write(encodeRequest({ cmd: "buildDerivation", drvPath, drv, options: DEFAULT_BUILD_OPTIONS }, 0x207));
  // The client's Nix is interrupted (Ctrl-C): ssh closes the gateway's stdin.
  input.end();
  const result = await session;
  assert.equal(aborted, true, "the pool's build was not cancelled");
  assert.equal(result.error?.code, "GATEWAY_SESSION_FAILED");
  assert.match(result.error?.message ?? "", /closed the connection during the build of .*hello\.drv/);
  assert.match(lines.join("\n"), /closed the connection/);
});

test("a client that sends its next request ahead and closes its side still gets the build's result", async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  const answers: Buffer[] = [];
  output.on("data", (c: Buffer) => answers.push(c));
  let finish!: (r: BuildResult) => void;
  let cancelled = false;
  const builds: GatewayBuilds = {
    build: (_drvPath, _drv, _options, _onLog, signal) =>
      new Promise<BuildResult>((resolve) => {
        finish = resolve;
        signal?.addEventListener("abort", () => (cancelled = true));
      }),
  };
  const session = runGatewaySession({
    input,
    output,
    log: () => undefined,
    store: Promise.resolve(everything),
    builds: Promise.resolve(builds),
  });
  input.write(encodeClientHello(0x207));
  input.write(encodeRequest({ cmd: "buildDerivation", drvPath, drv, options: DEFAULT_BUILD_OPTIONS }, 0x207));
  input.write(
    encodeRequest(
      { cmd: "queryValidPaths", lock: false, substitute: false, paths: [P("b", "hello")] },
      0x207,
    ),
  );
  input.end();
  await new Promise<void>((r) => input.once("end", r));
  finish({
    status: 0,
    statusName: "Built",
    errorMsg: "",
    timesBuilt: 1,
    isNonDeterministic: false,
    startTime: 1,
    stopTime: 2,
    builtOutputs: [],
  });
  const result = await session;
  assert.equal(cancelled, false);
  assert.equal(result.error, undefined);
  assert.deepEqual(result.requests, { buildDerivation: 1, queryValidPaths: 1 });
});
