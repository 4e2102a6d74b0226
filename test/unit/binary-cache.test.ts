import { test } from "node:test";
import assert from "node:assert/strict";
import {
  parseNarInfoName,
  parseNarName,
  narUrlOf,
  parseRange,
} from "../../src/core/binary-cache/cache-request.js";
import {
  cacheHostOf,
  parseCacheUrl,
  renderCacheNetrc,
  renderCacheNixConf,
  renderCacheNixosSettings,
} from "../../src/core/binary-cache/client-config.js";
import {
  BUILDER_CACHE_CONF,
  BUILDER_CACHE_NETRC,
  localHostCacheUrl,
  renderBuilderCacheConf,
} from "../../src/core/binary-cache/builder-config.js";
import { renderHostNixConf } from "../../src/providers/local/host.js";
import {
  narInfoFingerprint,
  parseNarInfo,
  renderCacheInfo,
  renderNarInfo,
} from "../../src/core/binary-cache/narinfo.js";
import { holderOrder, indexServableResults, type ResultFact } from "../../src/core/binary-cache/servable.js";
import {
  parsePublicSigningKey,
  parseSecretSigningKey,
  renderPublicSigningKey,
  renderSecretSigningKey,
  secretKeyFromSeed,
  signFingerprint,
  SigningKeyError,
  verifyFingerprint,
} from "../../src/core/binary-cache/signing-key.js";

// Made by the real `nix-store --generate-binary-cache-key test-1 sec pub` (Nix 2.8), and the
// signature the real `nix store sign --key-file sec` put on a path with this NAR hash and size:
// a throwaway key, kept here as a fixture.
const NIX_SECRET =
  "test-1:BpeT4be7ak7nB2rRujibRLQhpYnxs0osLhM+QnVyPG/xIbab6HmzU5pGctBUyauRT6qqzfDFeFeYItIdMAzcIA==";
const NIX_PUBLIC = "test-1:8SG2m+h5s1OaRnLQVMmrkU+qqs3wxXhXmCLSHTAM3CA=";
const NIX_PATH = {
  storePath: "/nix/store/2cfsckmpwm87ydfnh7q9189ln0f6pbxx-sigtest",
  narHash: "sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h",
  narSize: 120,
  references: [] as string[],
};
const NIX_SIG =
  "test-1:3wNC70uW0C7moJO/Iq5UbH7FviGJJc7TDGNcOqdOJdKSqYwAZjMgcWMM3qX46sowOVsJCeTjL6xJdtvgMWTDCA==";

test("a key Nix made reads back, renders to the same text, and signs a path as Nix does", () => {
  const k = parseSecretSigningKey(NIX_SECRET);
  assert.equal(k.name, "test-1");
  assert.equal(renderSecretSigningKey(k), NIX_SECRET);
  assert.equal(renderPublicSigningKey(k), NIX_PUBLIC);
  assert.equal(signFingerprint(k, narInfoFingerprint(NIX_PATH)), NIX_SIG);
  const pub = parsePublicSigningKey(NIX_PUBLIC);
  assert.ok(verifyFingerprint(pub, narInfoFingerprint(NIX_PATH), NIX_SIG));
  assert.ok(!verifyFingerprint(pub, narInfoFingerprint({ ...NIX_PATH, narSize: 121 }), NIX_SIG));
  assert.ok(!verifyFingerprint({ ...pub, name: "other-1" }, narInfoFingerprint(NIX_PATH), NIX_SIG));
});

test("keys made from a seed are Nix's format; malformed keys are refused with a reason", () => {
  const k = secretKeyFromSeed("pool.example-1", new Uint8Array(32).fill(7));
  assert.deepEqual(parseSecretSigningKey(renderSecretSigningKey(k)), k);
  assert.match(renderPublicSigningKey(k), /^pool\.example-1:[A-Za-z0-9+/]{43}=$/);
  const bad = [
    "no-colon",
    ":AAAA",
    "bad name:AAAA",
    `test-1:${"A".repeat(10)}`,
    "test-1:not base64!",
    // The public half of another key: refused.
    `test-1:${Buffer.concat([Buffer.alloc(32, 1), Buffer.alloc(32, 2)]).toString("base64")}`,
  ];
  for (const b of bad) assert.throws(() => parseSecretSigningKey(b), SigningKeyError, b);
  assert.throws(() => parsePublicSigningKey(NIX_SECRET), SigningKeyError);
  assert.throws(() => secretKeyFromSeed("x:y", new Uint8Array(32)), SigningKeyError);
});

test("the fingerprint sorts references and keeps full paths; the narinfo names them by base name", () => {
  const a = "/nix/store/0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a";
  const b = "/nix/store/1bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b";
  const info = {
    storePath: "/nix/store/2ccccccccccccccccccccccccccccccc-c",
    url: "nar/2ccccccccccccccccccccccccccccccc-x.nar",
    compression: "none" as const,
    narHash: "sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h",
    narSize: 5,
    references: [b, a],
    deriver: "/nix/store/3ddddddddddddddddddddddddddddddd-c.drv",
    sigs: ["k-1:sig"],
  };
  assert.equal(narInfoFingerprint(info), `1;${info.storePath};${info.narHash};5;${a},${b}`);
  const text = renderNarInfo(info);
  assert.match(text, /^References: 0a+-a 1b+-b$/m);
  assert.match(text, /^Deriver: 3d+-c\.drv$/m);
  assert.match(text, /^Compression: none$/m);
  assert.deepEqual(parseNarInfo(text), { ...info, references: [a, b] });
  assert.equal(renderCacheInfo(30), "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n");
});

test("request names: only store hashes and NAR names, never anything that could name a file", () => {
  const h = "2cfsckmpwm87ydfnh7q9189ln0f6pbxx";
  const n = "1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h";
  assert.equal(parseNarInfoName(`${h}.narinfo`), h);
  for (const bad of [
    "../etc/passwd",
    `${h}.narinfo/..`,
    `${h.toUpperCase()}.narinfo`,
    `${h}e.narinfo`,
    "e".repeat(32) + ".narinfo",
    `${h}`,
    "",
  ]) {
    assert.equal(parseNarInfoName(bad), undefined, bad);
  }
  assert.deepEqual(parseNarName(`${h}-${n}.nar`), { hash: h, narHash: `sha256:${n}` });
  assert.equal(narUrlOf(h, `sha256:${n}`), `nar/${h}-${n}.nar`);
  for (const bad of [`${h}-${n}.nar.xz`, `${h}.nar`, `../${h}-${n}.nar`, `${h}-${n}.nar/`]) {
    assert.equal(parseNarName(bad), undefined, bad);
  }
});

test("ranges: Nix's resume (bytes=N-), the single-range forms, and what is ignored or unsatisfiable", () => {
  assert.equal(parseRange(undefined, 100), undefined);
  assert.deepEqual(parseRange("bytes=10-", 100), { start: 10, end: 99 });
  assert.deepEqual(parseRange("bytes=10-19", 100), { start: 10, end: 19 });
  assert.deepEqual(parseRange("bytes=10-1000", 100), { start: 10, end: 99 });
  assert.deepEqual(parseRange("bytes=-5", 100), { start: 95, end: 99 });
  assert.equal(parseRange("bytes=100-", 100), "unsatisfiable");
  assert.equal(parseRange("bytes=20-10", 100), "unsatisfiable");
  assert.equal(parseRange("bytes=-0", 100), "unsatisfiable");
  assert.equal(parseRange("bytes=0-1,5-6", 100), undefined);
  assert.equal(parseRange("items=0-1", 100), undefined);
  assert.equal(parseRange(`bytes=${"9".repeat(30)}-`, 100), undefined);
});

test("only results a trusted builder built are servable; a builder marked untrusted since loses its own", () => {
  const fact = (
    output: string,
    builder: string,
    trust: "trusted" | "untrusted",
    narHash: string,
    builtAt: string,
  ): ResultFact => ({
    output,
    drv: `${output}.drv`,
    builder,
    trust,
    narHash,
    builtAt,
  });
  const p = (c: string) => `/nix/store/${c.repeat(32)}-x`;
  const facts = [
    fact(p("a"), "t1", "trusted", "sha256:1", "2026-01-01T00:00:00Z"),
    fact(p("a"), "u1", "untrusted", "sha256:1", "2026-01-01T00:00:01Z"),
    fact(p("a"), "t2", "trusted", "sha256:1", "2026-01-01T00:00:02Z"),
    fact(p("b"), "u1", "untrusted", "sha256:2", "2026-01-01T00:00:00Z"),
    fact(p("c"), "t3", "trusted", "sha256:3", "2026-01-01T00:00:00Z"),
  ];
  const trustNow = (b: string) => (b === "t3" ? "untrusted" : b.startsWith("t") ? "trusted" : "untrusted");
  const idx = indexServableResults(facts, trustNow);
  assert.deepEqual([...idx.byHash.keys()], ["a".repeat(32)]);
  assert.deepEqual(idx.byHash.get("a".repeat(32))?.builtBy, ["t2", "t1"]);
  assert.deepEqual(idx.byHash.get("a".repeat(32))?.narHashes, ["sha256:1"]);
  assert.deepEqual([...idx.untrustedOnly].sort(), [p("b"), p("c")]);
  const builders = [
    { name: "t1", trust: "trusted" as const, up: true },
    { name: "t2", trust: "trusted" as const, up: false },
    { name: "t4", trust: "trusted" as const, up: true },
    { name: "u1", trust: "untrusted" as const, up: true },
  ];
  assert.deepEqual(holderOrder(["t2", "t1"], builders, "here"), ["here", "t1", "t4"]);
});

test("client configuration: nix.conf, NixOS and netrc lines; cache URLs are checked", () => {
  const o = { url: "http://pool.example:7420/cache", publicKey: NIX_PUBLIC, netrcFile: "/etc/nix/netrc" };
  // An open cache (serve --cache-public): exactly the two lines, nothing else.
  assert.equal(
    renderCacheNixConf({ url: o.url, publicKey: o.publicKey }),
    `extra-substituters = http://pool.example:7420/cache\nextra-trusted-public-keys = ${NIX_PUBLIC}\n`,
  );
  assert.equal(
    renderCacheNixosSettings({ url: o.url, publicKey: o.publicKey }),
    `nix.settings.extra-substituters = [ "http://pool.example:7420/cache" ];\nnix.settings.extra-trusted-public-keys = [ "${NIX_PUBLIC}" ];\n`,
  );
  // With the token: Nix reads one netrc file, so the lines say to append to the one in use.
  assert.equal(
    renderCacheNixConf(o),
    [
      "# nixpool's binary cache: the pool's trusted results, signed with its key",
      "extra-substituters = http://pool.example:7420/cache",
      `extra-trusted-public-keys = ${NIX_PUBLIC}`,
      "# the cache's token: Nix reads ONE netrc file. If this machine already sets netrc-file, drop the next",
      "# line and append the pool's line to that file instead: nixpool cache netrc --url http://pool.example:7420/cache >> FILE",
      "netrc-file = /etc/nix/netrc",
      "",
    ].join("\n"),
  );
  assert.match(
    renderCacheNixosSettings(o),
    /append the pool's line to that file[^\n]*>> FILE\nnix\.settings\.netrc-file = "\/etc\/nix\/netrc";\n$/,
  );
  assert.match(
    renderCacheNixConf({ ...o, buildersUseSubstitutes: true }),
    /\nbuilders-use-substitutes = true\n$/,
  );
  // Said beside the line: the pool's builders substitute from this cache.
  assert.match(
    renderCacheNixConf({ ...o, buildersUseSubstitutes: true }),
    /\n# .*the pool's builders substitute from this cache[^\n]*\nbuilders-use/,
  );
  assert.match(
    renderCacheNixosSettings({ ...o, buildersUseSubstitutes: true }),
    /\nnix\.settings\.builders-use-substitutes = true;\n$/,
  );
  assert.match(
    renderCacheNixosSettings(o),
    /nix\.settings\.extra-substituters = \[ "http:\/\/pool\.example:7420\/cache" \];/,
  );
  assert.equal(
    renderCacheNetrc("pool.example", "TOKEN"),
    "machine pool.example login nixpool password TOKEN\n",
  );
  assert.equal(cacheHostOf("http://[::1]:7420/cache"), "::1");
  assert.equal(parseCacheUrl("http://h:1/cache/"), "http://h:1/cache");
  for (const bad of ["ftp://h/cache", "http://u:p@h/cache", "http://h/cache?x=1", "not a url", "file:///x"]) {
    assert.equal(parseCacheUrl(bad), undefined, bad);
  }
});

test("pool builders: the included nix.conf lines, and the cache's URL as a local host reaches it", () => {
  const url = "http://10.77.0.5:7420/cache";
  assert.equal(
    renderBuilderCacheConf({ url, publicKey: NIX_PUBLIC, netrcFile: BUILDER_CACHE_NETRC }),
    `# Written by nixpool serve: the pool's binary cache, for builds whose client sets builders-use-substitutes.\nextra-substituters = ${url}\nextra-trusted-public-keys = ${NIX_PUBLIC}\nnetrc-file = /etc/nix/nixpool-cache.netrc\n`,
  );
  assert.doesNotMatch(renderBuilderCacheConf({ url, publicKey: NIX_PUBLIC }), /netrc/);
  assert.deepEqual(localHostCacheUrl({ host: "0.0.0.0", port: 0 }, 7420, "10.77.0.5"), { url });
  assert.deepEqual(localHostCacheUrl({ host: "::", port: 7420 }, 7420, "10.77.0.5"), { url });
  assert.deepEqual(localHostCacheUrl({ host: "10.77.0.5", port: 7420 }, 7420, "10.77.0.5"), { url });
  assert.match(
    (localHostCacheUrl({ host: "127.0.0.1", port: 7420 }, 7420, "10.77.0.5") as { unreachable: string })
      .unreachable,
    /loopback/,
  );
  assert.ok("unreachable" in localHostCacheUrl({ host: "192.0.2.1", port: 7420 }, 7420, "10.77.0.5"));
  // Every local host's nix.conf includes the file (absent: no cache) after its empty substituters.
  const conf = renderHostNixConf(2);
  assert.match(conf, /^substituters =$/m);
  assert.ok(conf.indexOf("substituters =") < conf.indexOf(`!include ${BUILDER_CACHE_CONF}`), conf);
});
