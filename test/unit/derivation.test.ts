import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  derivationName,
  isFixedOutput,
  outputPaths,
  parseDerivation,
  preferLocalBuild,
  requiredSystemFeatures,
  toBasicDerivation,
  type Derivation,
} from "../../src/core/derivation.js";
import { isNixpoolError } from "../../src/core/errors.js";

// .drv files written by nix-instantiate from test/fixtures/nix/serve.nix, and what
// `nix show-derivation` (Nix 2.8) said about each: the parser must agree with Nix itself.
const dir = join(import.meta.dirname, "../fixtures/derivations");
const fixture = (name: string) => {
  const text = readFileSync(join(dir, `${name}.drv`), "utf8");
  const shown = JSON.parse(readFileSync(join(dir, `${name}.json`), "utf8")) as Record<string, NixShown>;
  const [path, expected] = Object.entries(shown)[0]!;
  return { text, path, expected };
};

interface NixShown {
  outputs: Record<string, { path: string; hashAlgo?: string; hash?: string }>;
  inputSrcs: string[];
  inputDrvs: Record<string, string[]>;
  system: string;
  builder: string;
  args: string[];
  env: Record<string, string>;
}

function asShown(d: Derivation): NixShown {
  return {
    outputs: Object.fromEntries(
      [...d.outputs].map(([n, o]) => [
        n,
        o.hash ? { path: o.path, hashAlgo: o.hashAlgo, hash: o.hash } : { path: o.path },
      ]),
    ),
    inputSrcs: d.inputSrcs,
    inputDrvs: Object.fromEntries(d.inputDrvs),
    system: d.platform,
    builder: d.builder,
    args: d.args,
    env: Object.fromEntries(d.env),
  };
}

for (const name of ["dep", "multi", "fixed", "failing", "local"]) {
  test(`${name}.drv parses exactly as nix show-derivation reads it`, () => {
    const { text, path, expected } = fixture(name);
    assert.deepEqual(asShown(parseDerivation(text, path)), expected);
    assert.equal(derivationName(path), name);
  });
}

test('escapes \\" \\\\ \\n \\r \\t are decoded in args and env', () => {
  const { text, path } = fixture("multi");
  const d = parseDerivation(text, path);
  assert.equal(d.env.get("quoted"), 'a\tb\nc\\d"e\r');
  assert.match(d.args[1]!, /q\\"t tab\tend/);
});

test("toBasicDerivation puts input derivations' outputs into sorted inputSrcs and sorts env", () => {
  const dep = fixture("dep");
  const multi = fixture("multi");
  const depDrv = parseDerivation(dep.text, dep.path);
  const drv = parseDerivation(multi.text, multi.path);
  drv.inputSrcs.push(
    "/nix/store/00000000000000000000000000000000-zzz-src",
    "/nix/store/11111111111111111111111111111111-aaa-src",
  );
  drv.env = new Map([...drv.env].reverse());
  const asked: string[] = [];
  const basic = toBasicDerivation(drv, (drvPath, out) => {
    asked.push(`${drvPath}!${out}`);
    assert.equal(drvPath, dep.path);
    return outputPaths(depDrv).get(out)!;
  });
  assert.deepEqual(asked, [`${dep.path}!out`]);
  assert.deepEqual(
    basic.inputSrcs,
    [
      "/nix/store/00000000000000000000000000000000-zzz-src",
      "/nix/store/11111111111111111111111111111111-aaa-src",
      depDrv.outputs.get("out")!.path,
    ].sort(),
  );
  assert.deepEqual([...basic.env.keys()], [...drv.env.keys()].sort());
  assert.deepEqual([...basic.outputs.keys()].sort(), ["dev", "out"]);
  assert.equal(basic.builder, "/bin/sh");
});

test("features, fixed outputs and preferLocalBuild are read from the derivation", () => {
  const get = (n: string) => {
    const f = fixture(n);
    return parseDerivation(f.text, f.path);
  };
  assert.deepEqual(requiredSystemFeatures(get("multi")), ["big-parallel", "kvm"]);
  assert.deepEqual(requiredSystemFeatures(get("dep")), []);
  assert.equal(isFixedOutput(get("fixed")), true);
  assert.equal(isFixedOutput(get("multi")), false);
  assert.equal(isFixedOutput(get("dep")), false);
  assert.equal(preferLocalBuild(get("local")), true);
  assert.equal(preferLocalBuild(get("dep")), false);
  const structured = get("dep");
  structured.env.set("__json", JSON.stringify({ requiredSystemFeatures: ["kvm"], preferLocalBuild: true }));
  assert.deepEqual(requiredSystemFeatures(structured), ["kvm"]);
  assert.equal(preferLocalBuild(structured), true);
});

test("malformed derivations are refused with the file and the offset", () => {
  const { text, path, expected } = fixture("multi");
  const devPath = expected.outputs["dev"]!.path;
  const outPath = expected.outputs["out"]!.path;
  const cases: [string, string, RegExp][] = [
    ["truncated", text.slice(0, text.length - 10), /not closed|expected/],
    ["empty", "", /expected "Derive\(\[" but found the end of the file/],
    ["not a derivation", "{}", /expected "Derive\(\["/],
    ["unknown escape", text.replace("a\\tb", "a\\qb"), /unknown escape "\\q"/],
    ["non-store output", text.replace(`"${devPath}"`, '"/tmp/x"'), /not a store path/],
    [
      "bad input drv",
      text.replace("ay0szy15l1xwql869ypd570zsk3jpmyf-dep.drv", "ay0szy15l1xwql869ypd570zsk3jpmyf-dep"),
      /not a \.drv/,
    ],
    ["trailing text", `${text}garbage`, /unexpected text after the derivation/],
    [
      "duplicate output",
      text.replace(`("out","${outPath}"`, `("dev","${outPath}"`),
      /output "dev" appears twice/,
    ],
    ["duplicate env", text.replace('("name","multi")', '("builder","multi")'), /"builder" appears twice/],
    ["no outputs", 'Derive([],[],[],"x","/bin/sh",[],[])', /no outputs/],
    ["missing comma", text.replace('"x86_64-linux","/bin/sh"', '"x86_64-linux""/bin/sh"'), /expected ","/],
  ];
  for (const [label, bad, pattern] of cases) {
    assert.throws(
      () => parseDerivation(bad, path),
      (e: unknown) => {
        assert.ok(isNixpoolError(e), label);
        assert.equal(e.code, "DERIVATION_INVALID", label);
        assert.match(e.message, pattern, label);
        assert.ok(e.message.includes(path), label);
        assert.match(e.message, /\(character \d+\)/, label);
        assert.equal(typeof e.details?.["offset"], "number", label);
        return true;
      },
      label,
    );
  }
});
