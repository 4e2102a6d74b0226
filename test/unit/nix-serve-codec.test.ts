import { test } from "node:test";
import assert from "node:assert/strict";
import {
  decodeAck,
  decodeAll,
  decodeBuildResult,
  decodeClientHello,
  decodePathInfos,
  decodePathList,
  decodeRequest,
  decodeServerHello,
  DEFAULT_BUILD_OPTIONS,
  encodeAck,
  encodeBuildResult,
  encodeClientHello,
  encodeExportStream,
  encodeNar,
  encodePathInfos,
  encodePathList,
  encodeRequest,
  encodeServerHello,
  IncrementalDecoder,
  isBuildSuccess,
  scanExportStream,
  scanNar,
  WireWriter,
  type BuildResult,
  type DecodeContext,
  type Decoder,
  type NarNode,
  type PathInfo,
  type ServeRequest,
} from "../../src/core/nix-serve/index.js";
import { isNixpoolError } from "../../src/core/errors.js";

const P = (c: string, name: string) => `/nix/store/${c.repeat(32)}-${name}`;
const drvPath = P("a", "hello.drv");
const out = P("b", "hello");
const dev = P("c", "hello-dev");

/** Decodes whole, then fed one byte at a time, then in 3-byte chunks: all must agree. */
function decodeEveryWay<T>(bytes: Uint8Array, make: (ctx: DecodeContext) => Decoder<T>): T {
  const whole = decodeAll(bytes, make, "test message");
  for (const size of [1, 3]) {
    const d = new IncrementalDecoder(make, "test message");
    let used = 0;
    for (let i = 0; i < bytes.length; i += size) used += d.push(bytes.subarray(i, i + size));
    assert.equal(used, bytes.length);
    assert.deepEqual(d.finish(), whole);
  }
  return whole;
}

function assertProtocolError(fn: () => unknown, pattern: RegExp, label = pattern.source): void {
  assert.throws(
    fn,
    (e: unknown) => {
      assert.ok(isNixpoolError(e), `${label}: ${String(e)}`);
      assert.equal(e.code, "SERVE_PROTOCOL_ERROR", label);
      assert.match(e.message, pattern, label);
      return true;
    },
    label,
  );
}

const basicDrv = {
  outputs: new Map([
    ["out", { path: out, hashAlgo: "", hash: "" }],
    ["dev", { path: dev, hashAlgo: "", hash: "" }],
  ]),
  inputSrcs: [P("d", "dep"), P("e", "src")],
  platform: "x86_64-linux",
  builder: "/bin/sh",
  args: ["-c", "echo hi > $out"],
  env: new Map([
    ["builder", "/bin/sh"],
    ["name", "hello"],
    ["out", out],
    ["weird", "é\u0000\n"],
  ]),
};

const requests: ServeRequest[] = [
  { cmd: "queryValidPaths", lock: true, substitute: false, paths: [out, dev] },
  { cmd: "queryValidPaths", lock: false, substitute: true, paths: [] },
  { cmd: "queryPathInfos", paths: [out] },
  { cmd: "dumpStorePath", path: out },
  { cmd: "importPaths" },
  { cmd: "exportPaths", paths: [out, dev] },
  { cmd: "queryClosure", includeOutputs: true, paths: [drvPath] },
  {
    cmd: "buildDerivation",
    drvPath,
    drv: basicDrv,
    options: {
      maxSilentTime: 60,
      buildTimeout: 3600,
      maxLogSize: 1 << 20,
      buildRepeat: 1,
      enforceDeterminism: true,
      keepFailed: true,
    },
  },
  {
    cmd: "addToStoreNar",
    info: {
      path: out,
      deriver: drvPath,
      narHash: "sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
      references: [dev],
      registrationTime: 1_700_000_000,
      narSize: 128,
      ultimate: false,
      sigs: ["cache:abc"],
      ca: "",
    },
  },
];

test("every request round-trips through the codec (version 0x207)", () => {
  for (const req of requests) {
    const bytes = encodeRequest(req, 0x207);
    assert.equal(bytes.length % 8, 0);
    assert.deepEqual(
      decodeEveryWay(bytes, (c) => decodeRequest(c, 0x207)),
      req,
      req.cmd,
    );
  }
});

test("a 0x206 client sends no keepFailed, and the server reads the same bytes without it", () => {
  const req = requests.find((r) => r.cmd === "buildDerivation")!;
  const b206 = encodeRequest(req, 0x206);
  assert.equal(encodeRequest(req, 0x207).length - b206.length, 8);
  const back = decodeEveryWay(b206, (c) => decodeRequest(c, 0x206));
  assert.ok(back.cmd === "buildDerivation");
  assert.equal(back.options.keepFailed, false);
  assert.equal(back.options.buildRepeat, 1);
});

test("BasicDerivation is written with sorted outputs and env, as Nix's std::map does", () => {
  const req = requests.find((r) => r.cmd === "buildDerivation")!;
  const back = decodeAll(encodeRequest(req, 0x207), (c) => decodeRequest(c, 0x207), "request");
  assert.ok(back.cmd === "buildDerivation");
  assert.deepEqual([...back.drv.outputs.keys()], ["dev", "out"]);
  assert.deepEqual([...back.drv.env.keys()], ["builder", "name", "out", "weird"]);
});

test("handshake: both greetings round-trip; the major version is checked", () => {
  assert.deepEqual(decodeEveryWay(encodeClientHello(0x206), decodeClientHello), { version: 0x206 });
  assert.deepEqual(decodeEveryWay(encodeServerHello(), decodeServerHello), { version: 0x207 });
  assertProtocolError(() => decodeAll(encodeServerHello(0x307), decodeServerHello, "hello"), /version 0x307/);
  assertProtocolError(
    () => decodeAll(encodeClientHello(), decodeServerHello, "hello"),
    /did not greet.*0x5452eecb.*0x390c9deb/,
  );
  // A shell greeting instead of the protocol: text where the magic should be.
  assertProtocolError(
    () => decodeAll(new TextEncoder().encode("Welcome!Welcome!"), decodeServerHello, "hello"),
    /did not greet/,
  );
});

test("path lists, path infos and acknowledgements round-trip", () => {
  assert.deepEqual(decodeEveryWay(encodePathList([out, dev]), decodePathList), [out, dev]);
  assert.deepEqual(decodeEveryWay(encodePathList([]), decodePathList), []);
  const infos: PathInfo[] = [
    {
      path: out,
      deriver: drvPath,
      references: [dev, out],
      downloadSize: 376,
      narSize: 376,
      narHash: "sha256:0nky0njlhl3bk4mpd9hcrwpphyskmi20yzygf5flmabdfalx2znz",
      ca: "",
      sigs: [],
    },
    {
      path: dev,
      deriver: "",
      references: [],
      downloadSize: 8,
      narSize: 8,
      narHash: "sha256:x",
      ca: "text:sha256:y",
      sigs: ["k:s"],
    },
  ];
  assert.deepEqual(decodeEveryWay(encodePathInfos(infos), decodePathInfos), infos);
  assert.deepEqual(decodeEveryWay(encodePathInfos([]), decodePathInfos), []);
  decodeEveryWay(encodeAck(), (c) => decodeAck(c, "ImportPaths"));
  assertProtocolError(
    () => decodeAll(new WireWriter().u64(0).finish(), (c) => decodeAck(c, "ImportPaths"), "ack"),
    /answered ImportPaths with 0/,
  );
});

const built: BuildResult = {
  status: 0,
  statusName: "Built",
  errorMsg: "",
  timesBuilt: 1,
  isNonDeterministic: false,
  startTime: 1_796_037_884,
  stopTime: 1_796_037_885,
  builtOutputs: [
    {
      id: "sha256:44de87f9bb4381f1081480666d5dc022c5c79eb03e8242a26b4e5e83dff36b03!dev",
      outputName: "dev",
      outPath: `${"c".repeat(32)}-hello-dev`,
      signatures: [],
    },
    {
      id: "sha256:44de87f9bb4381f1081480666d5dc022c5c79eb03e8242a26b4e5e83dff36b03!out",
      outputName: "out",
      outPath: `${"b".repeat(32)}-hello`,
      signatures: ["k:sig"],
    },
  ],
};

test("BuildResult round-trips with DrvOutputs, statuses are named", () => {
  assert.deepEqual(
    decodeEveryWay(encodeBuildResult(built, 0x207), (c) => decodeBuildResult(c, 0x207)),
    built,
  );
  const failed = {
    ...built,
    status: 3,
    statusName: "PermanentFailure" as const,
    errorMsg: "builder failed with exit code 3",
    builtOutputs: [],
  };
  const back = decodeEveryWay(encodeBuildResult(failed, 0x207), (c) => decodeBuildResult(c, 0x207));
  assert.deepEqual(back, failed);
  assert.equal(isBuildSuccess(back), false);
  assert.equal(isBuildSuccess(built), true);
  const newer = decodeAll(
    encodeBuildResult({ ...failed, status: 99 }, 0x207),
    (c) => decodeBuildResult(c, 0x207),
    "br",
  );
  assert.equal(newer.statusName, "Unknown");
  // A server older than 0x206 sends no DrvOutputs; older than 0x203 no times either.
  const old = decodeEveryWay(encodeBuildResult(built, 0x205), (c) => decodeBuildResult(c, 0x205));
  assert.deepEqual(old.builtOutputs, []);
  assert.equal(old.timesBuilt, 1);
  assert.equal(
    decodeEveryWay(encodeBuildResult(built, 0x202), (c) => decodeBuildResult(c, 0x202)).timesBuilt,
    0,
  );
});

test("a realisation that is not JSON, or has another id, is a protocol error", () => {
  const w = new WireWriter().u64(0).string("").u64(1).bool(false).u64(1).u64(2).u64(1);
  const id = "sha256:00!out";
  assertProtocolError(
    () =>
      decodeAll(
        new WireWriter().raw(w.finish()).string(id).string("{not json").finish(),
        (c) => decodeBuildResult(c, 0x207),
        "br",
      ),
    /not JSON/,
  );
  assertProtocolError(
    () =>
      decodeAll(
        new WireWriter()
          .raw(w.finish())
          .string(id)
          .string(JSON.stringify({ id: "other!out", outPath: "x" }))
          .finish(),
        (c) => decodeBuildResult(c, 0x207),
        "br",
      ),
    /matching id/,
  );
  assertProtocolError(
    () =>
      decodeAll(
        new WireWriter().raw(w.finish()).string("no-bang").string("{}").finish(),
        (c) => decodeBuildResult(c, 0x207),
        "br",
      ),
    /without "!<output>"/,
  );
});

const tree: NarNode = {
  type: "directory",
  entries: {
    bin: {
      type: "directory",
      entries: { hello: { type: "regular", executable: true, contents: "#!/bin/sh\necho hi\n" } },
    },
    "empty-file": { type: "regular", contents: "" },
    link: { type: "symlink", target: "bin/hello" },
    share: { type: "directory", entries: {} },
  },
};

test("NARs are scanned without keeping contents, in any chunking", () => {
  const nar = encodeNar(tree);
  const s = decodeEveryWay(nar, scanNar);
  assert.deepEqual(s, { size: nar.length, files: 2, directories: 3, symlinks: 1, contentBytes: 18 });
  const big = encodeNar({ type: "regular", contents: new Uint8Array(1 << 20).fill(7) });
  assert.equal(decodeEveryWay(big, scanNar).contentBytes, 1 << 20);
});

test("an export stream is scanned to its end and leaves following bytes alone", () => {
  const stream = encodeExportStream([
    { path: dev, references: [], deriver: "", nar: encodeNar({ type: "regular", contents: "dev" }) },
    { path: out, references: [dev, out], deriver: drvPath, nar: encodeNar(tree) },
  ]);
  const paths = decodeEveryWay(stream, scanExportStream);
  assert.deepEqual(
    paths.map((p) => [p.path, p.references, p.deriver]),
    [
      [dev, [], ""],
      [out, [dev, out], drvPath],
    ],
  );
  assert.deepEqual(decodeEveryWay(encodeExportStream([]), scanExportStream), []);
  // The decoder stops exactly at the stream's end; the next answer's bytes are not consumed.
  const d = new IncrementalDecoder(scanExportStream, "export stream");
  const withMore = new WireWriter().raw(stream).u64(1).finish();
  assert.equal(d.push(withMore), stream.length);
  assert.ok(d.done);
  // Nix's importer still accepts a legacy signature after the deriver: so do we.
  const nar = encodeNar({ type: "regular", contents: "x" });
  const legacy = new WireWriter()
    .u64(1)
    .raw(nar)
    .u64(0x4558494e)
    .string(out)
    .strings([])
    .string("")
    .u64(1)
    .string("sig")
    .u64(0)
    .finish();
  assert.equal(decodeEveryWay(legacy, scanExportStream).length, 1);
});

/** A NAR built token by token, to break it on purpose. */
function narOf(...tokens: (string | number | Uint8Array)[]): Uint8Array {
  const w = new WireWriter();
  for (const t of tokens) {
    if (typeof t === "number") w.u64(t);
    else if (typeof t === "string") w.string(t);
    else w.raw(t);
  }
  return w.finish();
}

test("malformed NARs are refused with the reason", () => {
  const file = (name: string) => [
    "entry",
    "(",
    "name",
    name,
    "node",
    "(",
    "type",
    "regular",
    "contents",
    0,
    ")",
    ")",
  ];
  const cases: [Uint8Array, RegExp][] = [
    [
      narOf("nix-archive-2", "(", "type", "regular", "contents", 0, ")"),
      /does not start with "nix-archive-1"/,
    ],
    [narOf("not-a-nar-at-all-really"), /does not start with "nix-archive-1"/],
    [narOf("nix-archive-1", "(", "type", "fifo", ")"), /unknown node type "fifo"/],
    [
      narOf("nix-archive-1", "(", "type", "directory", ...file("b"), ...file("a"), ")"),
      /not sorted \("b" before "a"\)/,
    ],
    [narOf("nix-archive-1", "(", "type", "directory", ...file("a"), ...file("a"), ")"), /not sorted/],
    [narOf("nix-archive-1", "(", "type", "directory", ...file(".."), ")"), /invalid entry name "\.\."/],
    [narOf("nix-archive-1", "(", "type", "directory", ...file("a/b"), ")"), /invalid entry name "a\/b"/],
    [narOf("nix-archive-1", "(", "type", "directory", ...file(""), ")"), /invalid entry name ""/],
    [
      narOf("nix-archive-1", "(", "type", "regular", "executable", "yes", "contents", 0, ")"),
      /executable marker/,
    ],
    [narOf("nix-archive-1", "(", "type", "regular", ")"), /expected "contents"/],
    [narOf("nix-archive-1", "(", "type", "symlink", "target", "", ")"), /empty target/],
    [narOf("nix-archive-1", "(", "type", "directory", "stuff", ")"), /expected "entry" or "\)"/],
    [narOf("nix-archive-1", "[", "type", "regular", "contents", 0, ")"), /expected "\(" to open/],
    [
      narOf(
        "nix-archive-1",
        "(",
        "type",
        "regular",
        "contents",
        2,
        new Uint8Array([65, 66, 0, 0, 0, 0, 0, 1]),
        ")",
      ),
      /non-zero padding/,
    ],
  ];
  for (const [bytes, pattern] of cases) assertProtocolError(() => decodeAll(bytes, scanNar, "NAR"), pattern);
  // Too deep: one directory inside another, 1,100 times.
  const w = new WireWriter().string("nix-archive-1");
  for (let i = 0; i < 1100; i++)
    w.string("(")
      .string("type")
      .string("directory")
      .string("entry")
      .string("(")
      .string("name")
      .string("d")
      .string("node");
  assertProtocolError(() => decodeAll(w.finish(), scanNar, "NAR"), /nest deeper than 1024/);
});

test("malformed export streams are refused", () => {
  const nar = encodeNar({ type: "regular", contents: "x" });
  const cases: [Uint8Array, RegExp][] = [
    [new WireWriter().u64(2).finish(), /expected 0 or 1 before a path but found 2/],
    [new WireWriter().u64(1).raw(nar).u64(0x12345678).finish(), /expected the magic "NIXE"/],
    [
      new WireWriter()
        .u64(1)
        .raw(nar)
        .u64(0x4558494e)
        .string("/tmp/x")
        .strings([])
        .string("")
        .u64(0)
        .u64(0)
        .finish(),
      /"\/tmp\/x" is not a store path/,
    ],
    [
      new WireWriter()
        .u64(1)
        .raw(nar)
        .u64(0x4558494e)
        .string(out)
        .strings(["../etc"])
        .string("")
        .u64(0)
        .u64(0)
        .finish(),
      /reference "\.\.\/etc"/,
    ],
    [
      new WireWriter()
        .u64(1)
        .raw(nar)
        .u64(0x4558494e)
        .string(out)
        .strings([])
        .string("x")
        .u64(0)
        .u64(0)
        .finish(),
      /deriver "x"/,
    ],
    [
      new WireWriter().u64(1).raw(nar).u64(0x4558494e).string(out).strings([]).string("").u64(7).finish(),
      /signature marker/,
    ],
  ];
  for (const [bytes, pattern] of cases)
    assertProtocolError(() => decodeAll(bytes, scanExportStream, "export stream"), pattern);
});

test("every truncation of every message is a clean error, never a value", () => {
  const messages: [Uint8Array, (c: DecodeContext) => Decoder<unknown>][] = [
    ...requests.map(
      (r) =>
        [encodeRequest(r, 0x207), (c: DecodeContext) => decodeRequest(c, 0x207)] as [
          Uint8Array,
          (c: DecodeContext) => Decoder<unknown>,
        ],
    ),
    [encodeServerHello(), decodeServerHello],
    [
      encodePathInfos([
        {
          path: out,
          deriver: "",
          references: [dev],
          downloadSize: 1,
          narSize: 1,
          narHash: "h",
          ca: "",
          sigs: [],
        },
      ]),
      decodePathInfos,
    ],
    [encodeBuildResult(built, 0x207), (c) => decodeBuildResult(c, 0x207)],
    [
      encodeExportStream([{ path: out, references: [], deriver: "", nar: encodeNar(tree) }]),
      scanExportStream,
    ],
  ];
  for (const [bytes, make] of messages) {
    for (let cut = 0; cut < bytes.length; cut++) {
      assertProtocolError(
        () => decodeAll(bytes.subarray(0, cut), make, "message"),
        /ended after \d+ bytes|padding/,
        `cut at ${cut}`,
      );
    }
  }
});

test("non-zero string padding, oversized lengths and huge integers are refused before reading on", () => {
  const padded = new WireWriter()
    .u64(1)
    .u64(3)
    .raw(new Uint8Array([0x61, 0x62, 0x63, 0, 0, 0, 0, 9]))
    .finish();
  assertProtocolError(
    () => decodeAll(padded, decodePathList, "list"),
    /non-zero padding after path list\[0\] at byte 19/,
  );
  const long = new WireWriter()
    .u64(1)
    .u64(2 ** 40)
    .finish();
  assertProtocolError(
    () => new IncrementalDecoder(decodePathList, "list").push(long),
    /1099511627776-byte string.*limit is 67108864 bytes/,
  );
  const many = new WireWriter().u64(2 ** 32).finish();
  assertProtocolError(
    () => new IncrementalDecoder(decodePathList, "list").push(many),
    /list of 4294967296 items.*limit is 1000000/,
  );
  const limits = { maxStringBytes: 16, maxListItems: 2 };
  assertProtocolError(
    () => decodeAll(encodePathList([out]), decodePathList, "list", limits),
    /limit is 16 bytes/,
  );
  assertProtocolError(
    () => decodeAll(encodePathList(["a", "b", "c"]), decodePathList, "list", limits),
    /list of 3 items/,
  );
  const huge = new Uint8Array(8).fill(0xff);
  assertProtocolError(() => decodeAll(huge, decodePathList, "list"), /integer too large/);
  assertProtocolError(
    () => decodeAll(new WireWriter().u64(42).finish(), (c) => decodeRequest(c, 0x207), "request"),
    /Unknown serve command 42/,
  );
  // A decoder that failed keeps failing; it never returns a value afterwards.
  const d = new IncrementalDecoder(decodePathList, "list");
  assert.throws(() => d.push(long));
  assert.throws(() => d.push(new Uint8Array(8)));
  assert.throws(() => d.finish());
  assert.equal(DEFAULT_BUILD_OPTIONS.keepFailed, false);
});
