import { test } from "node:test";
import assert from "node:assert/strict";
import {
  decodeAck,
  decodeAll,
  decodeBuildResult,
  decodeClientMagic,
  decodeClientVersion,
  decodePathInfos,
  decodePathList,
  decodeServerHello,
  decodeServerRequest,
  DEFAULT_BUILD_OPTIONS,
  encodeAck,
  encodeBuildResultFor,
  encodeClientHello,
  encodePathInfosFor,
  encodePathList,
  encodeRequest,
  encodeServerHello,
  IncrementalDecoder,
  isNarHash,
  negotiatedVersion,
  SERVER_REQUEST_LIMITS,
  WireWriter,
  type BuildResult,
  type DecodeContext,
  type Decoder,
  type PathInfo,
  type ServeRequest,
} from "../../src/core/nix-serve/index.js";
import { isNixpoolError } from "../../src/core/errors.js";

const P = (c: string, name: string) => `/nix/store/${c.repeat(32)}-${name}`;
const drvPath = P("a", "hello.drv");
const out = P("b", "hello");
const V28 = 0x207;
const V23 = 0x205;

function decodeChunked<T>(bytes: Uint8Array, make: (ctx: DecodeContext) => Decoder<T>): T {
  const whole = decodeAll(bytes, make, "test message");
  const d = new IncrementalDecoder(make, "test message");
  for (let i = 0; i < bytes.length; i++) d.push(bytes.subarray(i, i + 1));
  assert.deepEqual(d.finish(), whole);
  return whole;
}

function refused(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isNixpoolError(e), String(e));
    assert.equal(e.code, "SERVE_PROTOCOL_ERROR");
    assert.match(e.message, pattern);
    return true;
  });
}

const basicDrv = {
  outputs: new Map([["out", { path: out, hashAlgo: "", hash: "" }]]),
  inputSrcs: [P("d", "dep")],
  platform: "x86_64-linux",
  builder: "/bin/sh",
  args: ["-c", "echo hi > $out"],
  env: new Map([
    ["name", "hello"],
    ["out", out],
  ]),
};

const requests: ServeRequest[] = [
  { cmd: "queryValidPaths", lock: false, substitute: true, paths: [out, P("d", "dep")] },
  { cmd: "queryPathInfos", paths: [out] },
  { cmd: "dumpStorePath", path: out },
  { cmd: "importPaths" },
  { cmd: "exportPaths", paths: [out] },
  { cmd: "queryClosure", includeOutputs: true, paths: [drvPath] },
  {
    cmd: "buildDerivation",
    drvPath,
    drv: basicDrv,
    options: {
      ...DEFAULT_BUILD_OPTIONS,
      maxSilentTime: 7,
      buildTimeout: 9,
      maxLogSize: 11,
      keepFailed: true,
    },
  },
  {
    cmd: "addToStoreNar",
    info: {
      path: P("d", "dep"),
      deriver: "",
      narHash: "a".repeat(64),
      references: [P("d", "dep")],
      registrationTime: 0,
      narSize: 112,
      ultimate: false,
      sigs: [],
      ca: "",
    },
  },
];

test("the greeting: the client's magic, our magic and 0x207, the client's version", () => {
  const hello = encodeClientHello(V28);
  decodeAll(hello.subarray(0, 8), decodeClientMagic, "magic");
  assert.equal(decodeAll(hello.subarray(8), decodeClientVersion, "version"), V28);
  assert.deepEqual(decodeAll(encodeServerHello(), decodeServerHello, "hello"), { version: 0x207 });
  assert.equal(decodeAll(encodeClientHello(V23).subarray(8), decodeClientVersion, "version"), V23);
  assert.equal(negotiatedVersion(0x208), 0x207);
  assert.equal(negotiatedVersion(V23), V23);
});

test("a wrong magic, another major version, or a client older than 2.3 is refused", () => {
  refused(() => decodeAll(new WireWriter().u64(0x1234).finish(), decodeClientMagic, "m"), /did not greet/);
  refused(() => decodeAll(new WireWriter().u64(0x300).finish(), decodeClientVersion, "v"), /0x300/);
  refused(() => decodeAll(new WireWriter().u64(0x204).finish(), decodeClientVersion, "v"), /Nix 2\.3/);
});

test("every request the client half encodes, the server half decodes, for 2.8 and 2.3 clients", () => {
  for (const version of [V28, V23]) {
    for (const req of requests) {
      const got = decodeChunked(encodeRequest(req, version), (ctx) => decodeServerRequest(ctx, version));
      if (req.cmd === "buildDerivation" && version === V23) {
        // A 2.3 client sends no keepFailed: the server keeps the default.
        assert.deepEqual(got, { ...req, options: { ...req.options, keepFailed: false } });
      } else assert.deepEqual(got, req, `${req.cmd} at 0x${version.toString(16)}`);
    }
  }
});

test("answers the server half encodes, the client half decodes", () => {
  const paths = [out, P("d", "dep")];
  assert.deepEqual(decodeChunked(encodePathList(paths), decodePathList), paths);
  decodeAll(encodeAck(), (ctx) => decodeAck(ctx, "AddToStoreNar"), "ack");
  const info: PathInfo = {
    path: out,
    deriver: drvPath,
    references: [P("d", "dep")],
    downloadSize: 120,
    narSize: 120,
    narHash: `sha256:${"0".repeat(52)}`,
    ca: "",
    sigs: ["k:sig"],
  };
  assert.deepEqual(decodeChunked(encodePathInfosFor([info], V28), decodePathInfos), [info]);
  assert.deepEqual(decodeChunked(encodePathInfosFor([], V28), decodePathInfos), []);
  // Minor < 4: no narHash, ca, sigs (what opServe sends to such a client).
  const old = new WireWriter()
    .string(out)
    .string(drvPath)
    .strings(info.references)
    .u64(120)
    .u64(120)
    .string("");
  assert.deepEqual(encodePathInfosFor([info], 0x203), old.finish());
});

test("BuildResult: DrvOutputs for a 2.8 client, none for a 2.3 client", () => {
  const r: BuildResult = {
    status: 3,
    statusName: "PermanentFailure",
    errorMsg: "builder failed\nlast lines",
    timesBuilt: 1,
    isNonDeterministic: false,
    startTime: 1000,
    stopTime: 1002,
    builtOutputs: [
      {
        id: `sha256:${"1".repeat(64)}!out`,
        outputName: "out",
        outPath: `${"b".repeat(32)}-hello`,
        signatures: [],
      },
    ],
  };
  assert.deepEqual(
    decodeChunked(encodeBuildResultFor(r, V28), (c) => decodeBuildResult(c, V28)),
    r,
  );
  const for23 = encodeBuildResultFor(r, V23);
  assert.deepEqual(
    decodeChunked(for23, (c) => decodeBuildResult(c, V23)),
    { ...r, builtOutputs: [] },
  );
  // Exactly status, errorMsg and four times: nothing a 2.3 client would leave unread.
  const expected = new WireWriter().u64(3).string(r.errorMsg).u64(1).bool(false).u64(1000).u64(1002).finish();
  assert.deepEqual(for23, expected);
});

test("unknown commands and BuildPaths are refused by number", () => {
  refused(
    () => decodeAll(new WireWriter().u64(42).finish(), (c) => decodeServerRequest(c, V28), "r"),
    /command 42/,
  );
  refused(
    () => decodeAll(new WireWriter().u64(6).strings([out]).finish(), (c) => decodeServerRequest(c, V28), "r"),
    /command 6 \(BuildPaths\)/,
  );
});

test("truncated frames, absurd lengths and non-zero padding are refused", () => {
  const full = encodeRequest(requests[6]!, V28);
  for (const cut of [4, 8, 20, full.length - 1]) {
    refused(
      () => decodeAll(full.subarray(0, cut), (c) => decodeServerRequest(c, V28), "request"),
      /ended after/,
    );
  }
  const huge = new WireWriter()
    .u64(2)
    .u64(2 ** 40)
    .finish();
  refused(() => decodeAll(huge, (c) => decodeServerRequest(c, V28), "r"), /list of \d+ items/);
  const long = new WireWriter()
    .u64(3)
    .u64(2 ** 50)
    .finish();
  refused(() => decodeAll(long, (c) => decodeServerRequest(c, V28), "r"), /-byte string/);
  const padded = new WireWriter()
    .u64(3)
    .u64(1)
    .raw(new Uint8Array([0x2f, 0, 0, 1, 0, 0, 0, 0]))
    .finish();
  refused(() => decodeAll(padded, (c) => decodeServerRequest(c, V28), "r"), /non-zero padding/);
  const tooBig = new WireWriter()
    .u64(3)
    .raw(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0x80]))
    .finish();
  refused(() => decodeAll(tooBig, (c) => decodeServerRequest(c, V28), "r"), /too large/);
});

test("contents are checked: store paths, the derivation, the NAR hash and size", () => {
  const dec = (req: ServeRequest) => () =>
    decodeAll(encodeRequest(req, V28), (c) => decodeServerRequest(c, V28), "request");
  refused(
    dec({ cmd: "queryValidPaths", lock: false, substitute: false, paths: ["/etc/passwd"] }),
    /not a store path/,
  );
  refused(dec({ cmd: "dumpStorePath", path: `${out}/../../etc` }), /not a store path/);
  const build = requests[6] as Extract<ServeRequest, { cmd: "buildDerivation" }>;
  refused(dec({ ...build, drvPath: out }), /not a \.drv store path/);
  refused(dec({ ...build, drv: { ...basicDrv, outputs: new Map() } }), /without outputs/);
  refused(dec({ ...build, drv: { ...basicDrv, inputSrcs: ["relative"] } }), /input of/);
  const add = requests[7] as Extract<ServeRequest, { cmd: "addToStoreNar" }>;
  refused(dec({ cmd: "addToStoreNar", info: { ...add.info, narHash: "md5:abc" } }), /not a SHA-256 hash/);
  refused(dec({ cmd: "addToStoreNar", info: { ...add.info, narSize: 0 } }), /between 1 byte/);
  refused(dec({ cmd: "addToStoreNar", info: { ...add.info, references: ["x"] } }), /reference of/);
  assert.ok(isNarHash(`sha256:${"0".repeat(52)}`));
  assert.ok(isNarHash("f".repeat(64)));
  assert.ok(!isNarHash("F".repeat(64)));
});

/** Feeds `bytes` to a server-side request decoder with the server's limits; returns the error thrown. */
function serverRefusal(bytes: Uint8Array): Error {
  const d = new IncrementalDecoder((c) => decodeServerRequest(c, V28), "request", SERVER_REQUEST_LIMITS);
  try {
    d.push(bytes);
  } catch (e) {
    return e as Error;
  }
  assert.fail("the request was not refused while it was decoded");
}

test("a request's total size is bounded while it is decoded: long paths, many paths, a huge env", () => {
  // A "path" longer than any store path is refused at its length, before its bytes arrive.
  const longPath = serverRefusal(
    new WireWriter()
      .u64(1)
      .bool(false)
      .bool(false)
      .u64(1)
      .u64(16 * 1024 * 1024)
      .finish(),
  );
  assert.ok(isNixpoolError(longPath));
  assert.match(longPath.message, /16777216-byte string for paths\[0\].*limit is 255 bytes/);
  // More paths than a request may hold: refused at the count.
  const many = serverRefusal(new WireWriter().u64(1).bool(false).bool(false).u64(1_000_000).finish());
  assert.match(many.message, /list of 1000000 items for paths.*limit is 100000/);
  // Store paths of the right length, but more bytes of them than one request may hold: cut once
  // the total passes 16 MiB, without waiting for the rest.
  const w = new WireWriter().u64(1).bool(false).bool(false).u64(100_000);
  const p = P("b", "x".repeat(211));
  assert.equal(p.length, 255);
  for (let i = 0; i < 70_000; i++) w.string(p);
  const total = serverRefusal(w.finish());
  assert.match(total.message, /message grew over 16777216 bytes.*paths\[\d+\]/);
  // A BuildDerivation whose env values add up to more than 16 MiB: cut at the value that passes it,
  // before its bytes are read.
  const head = new WireWriter().u64(8).string(drvPath).u64(1).string("out").string(out).string("").string("");
  head.strings([]).string("x86_64-linux").string("/bin/sh").strings([]).u64(3);
  head.string("a").string("x".repeat(8 * 1024 * 1024));
  head.string("b").u64(9 * 1024 * 1024);
  const env = serverRefusal(head.finish());
  assert.match(env.message, /9437184-byte string for env b/);
  // Within the limits, the same decoder reads the requests Nix sends.
  for (const r of requests) {
    const d = new IncrementalDecoder((c) => decodeServerRequest(c, V28), "request", SERVER_REQUEST_LIMITS);
    d.push(encodeRequest(r, V28));
    assert.deepEqual(d.finish(), r);
  }
});
