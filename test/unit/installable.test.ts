import { test } from "node:test";
import assert from "node:assert/strict";
import {
  checkFileOptions,
  checkFlakeOptions,
  derivationWalkExpr,
  flakeAttrCandidates,
  flakeOptionArgv,
  installablesLabel,
  memberLabel,
  NO_FLAKE_OPTIONS,
  outLinkStyle,
  parseInstallable,
  parseSystem,
  parseWalkOutput,
  type FlakeInstallable,
  type PathFacts,
} from "../../src/core/installable.js";
import { NixpoolError } from "../../src/core/errors.js";
import { flakeEvalError } from "../../src/core/flake-errors.js";
import { outLinkNames } from "../../src/dispatch/out-links.js";
import { checkRows, isCheckFailure } from "../../src/core/flake-check.js";
import type { DerivationRecord } from "../../src/core/build-record.js";

const none = { attrs: [], args: [] };
const missing: PathFacts = { exists: false };
const dir = (hasFlakeNix: boolean, hasDefaultNix = false): PathFacts => ({
  exists: true,
  isDirectory: true,
  hasFlakeNix,
  hasDefaultNix,
});
const file: PathFacts = { exists: true, isDirectory: false, hasFlakeNix: false, hasDefaultNix: false };

const codeOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    if (e instanceof NixpoolError) return e.code;
    throw e;
  }
  return "none";
};

test("a word with # or a scheme is a flake; local references become absolute", () => {
  assert.deepEqual(parseInstallable(".#hello", "/w", missing, none), {
    kind: "flake",
    ref: "/w",
    fragment: "hello",
    shown: ".#hello",
  });
  assert.deepEqual(parseInstallable("sub#pkg.dev", "/w/sub", missing, none), {
    kind: "flake",
    ref: "sub",
    fragment: "pkg.dev",
    shown: "sub#pkg.dev",
  });
  assert.deepEqual(parseInstallable("./sub#pkg", "/w/sub", missing, none).kind, "flake");
  assert.equal((parseInstallable("./sub#pkg", "/w/sub", missing, none) as FlakeInstallable).ref, "/w/sub");
  const git = parseInstallable(
    "git+file:///repo?ref=main#x",
    "/w/git+file:",
    missing,
    none,
  ) as FlakeInstallable;
  assert.deepEqual([git.ref, git.fragment], ["git+file:///repo?ref=main", "x"]);
  const p = parseInstallable("path:/abs", "/w/path:/abs", missing, none) as FlakeInstallable;
  assert.deepEqual([p.ref, p.fragment], ["path:/abs", ""]);
  // A registry name (no slash, nothing on disk) goes to Nix as it is.
  assert.equal(
    (parseInstallable("nixpkgs#hello", "/w/nixpkgs", missing, none) as FlakeInstallable).ref,
    "nixpkgs",
  );
});

test("a directory with flake.nix is a flake; a file or a default.nix directory is a Nix file", () => {
  assert.deepEqual(parseInstallable(".", "/w", dir(true), none), {
    kind: "flake",
    ref: "/w",
    fragment: "",
    shown: ".",
  });
  const f = parseInstallable("graph.nix", "/w/graph.nix", file, { attrs: ["a"], args: [] });
  assert.deepEqual(f, { kind: "file", file: "/w/graph.nix", shown: "graph.nix", attrs: ["a"], args: [] });
  assert.equal(parseInstallable("pkgs", "/w/pkgs", dir(false, true), none).kind, "file");
  // Missing and path-like: a Nix file, so nix-instantiate names it (NIX_FILE_NOT_FOUND) as before.
  assert.equal(parseInstallable("gone.nix", "/w/gone.nix", missing, none).kind, "file");
  assert.equal(parseInstallable("a/b", "/w/a/b", missing, none).kind, "file");
  // Neither flake.nix nor default.nix: a flake reference, as nix build reads it (Nix searches the
  // parent directories for flake.nix, so `nixpool build .` works in a flake's subdirectory).
  assert.deepEqual(parseInstallable(".", "/w/src", dir(false), none), {
    kind: "flake",
    ref: "/w/src",
    fragment: "",
    shown: ".",
  });
  assert.equal(
    codeOf(() => parseInstallable("flake.nix", "/w/flake.nix", file, none)),
    "USAGE",
  );
  assert.equal(
    codeOf(() => parseInstallable(" ", "/w", missing, none)),
    "USAGE",
  );
});

test("-A and --arg need a Nix file; flake options need a flake", () => {
  const flake = parseInstallable(".#x", "/w", missing, none);
  const nixFile = parseInstallable("f.nix", "/w/f.nix", file, none);
  assert.equal(
    codeOf(() => checkFileOptions([flake], { attrs: ["a"], args: [] })),
    "FLAG_CONFLICT",
  );
  assert.equal(
    codeOf(() => checkFileOptions([flake], { attrs: [], args: [{ kind: "arg", name: "n", value: "1" }] })),
    "FLAG_CONFLICT",
  );
  checkFileOptions([flake, nixFile], { attrs: ["a"], args: [] });
  const override = { ...NO_FLAKE_OPTIONS, overrideInputs: [{ input: "dep", ref: "path:/x" }] };
  assert.equal(
    codeOf(() => checkFlakeOptions([nixFile], override)),
    "FLAG_CONFLICT",
  );
  checkFlakeOptions([flake], override);
  checkFlakeOptions([nixFile], { ...NO_FLAKE_OPTIONS, system: "aarch64-linux" });
});

test("attribute paths are tried in Nix 2.8's order; options pass through as Nix spells them", () => {
  assert.deepEqual(flakeAttrCandidates("hello", "x86_64-linux"), [
    "packages.x86_64-linux.hello",
    "legacyPackages.x86_64-linux.hello",
    "hello",
  ]);
  assert.deepEqual(flakeAttrCandidates("", "aarch64-linux"), [
    "packages.aarch64-linux.default",
    "defaultPackage.aarch64-linux",
  ]);
  assert.deepEqual(
    flakeOptionArgv({
      system: "aarch64-linux",
      overrideInputs: [{ input: "a/b", ref: "path:/x?dir=y" }],
      updateInputs: ["c"],
      noWriteLockFile: true,
      noUpdateLockFile: true,
      recreateLockFile: true,
      commitLockFile: false,
      refresh: true,
      impure: true,
    }),
    [
      "--override-input",
      "a/b",
      "path:/x?dir=y",
      "--update-input",
      "c",
      "--no-write-lock-file",
      "--no-update-lock-file",
      "--recreate-lock-file",
      "--refresh",
      "--impure",
      "--option",
      "system",
      "aarch64-linux",
    ],
  );
  assert.equal(parseSystem("x86_64-linux"), "x86_64-linux");
  assert.equal(
    codeOf(() => parseSystem('x"; builtins.abort "')),
    "USAGE",
  );
});

test("the walk's answer is validated; labels and out-link names follow nix build for flakes", () => {
  assert.deepEqual(
    parseWalkOutput(
      '[{"attr":["a"],"drv":"/nix/store/k796y369ci6jnircaliyvz6n9n2k0mhg-ca.drv","out":"out"},{"attr":["b"],"failed":true}]',
      ".#checks",
    ),
    [
      { attr: ["a"], drv: "/nix/store/k796y369ci6jnircaliyvz6n9n2k0mhg-ca.drv", out: "out" },
      { attr: ["b"], failed: true },
    ],
  );
  for (const bad of ["", "{}", '[{"attr":[],"drv":"/etc/passwd","out":"out"}]', '[{"attr":[],"drv":"x"}]'])
    assert.equal(
      codeOf(() => parseWalkOutput(bad, ".#x")),
      "NIX_EVAL_FAILED",
      bad,
    );
  assert.match(derivationWalkExpr({ deep: true, toplevel: true }), /config\.system\.build\.toplevel/);
  // A member evaluated alone (its set's walk failed): a nested set is entered only as the set's walk
  // would enter it, and a NixOS configuration is its own toplevel.
  assert.match(derivationWalkExpr({ deep: false, toplevel: false, member: true }), /\(false \|\| false \|\|/);
  assert.match(derivationWalkExpr({ deep: false, toplevel: false }), /\(p == \[\] \|\| false \|\|/);
  assert.match(
    derivationWalkExpr({ deep: false, toplevel: true, member: true }),
    /walk \[\] \(v\.config\.system\.build\.toplevel\)/,
  );
  const f = parseInstallable(".#checks.x86_64-linux", "/w", missing, none) as FlakeInstallable;
  assert.equal(memberLabel(f, ["a b"]), '.#checks.x86_64-linux."a b"');
  assert.equal(memberLabel(parseInstallable(".", "/w", dir(true), none) as FlakeInstallable, ["x"]), ".#x");
  assert.equal(installablesLabel([f]), "/w#checks.x86_64-linux");
  const roots = [
    { outputName: "out", path: "/nix/store/a" },
    { outputName: "out", path: "/nix/store/b" },
    { outputName: "dev", path: "/nix/store/c" },
  ];
  assert.deepEqual(
    outLinkNames("result", roots, outLinkStyle([f])).map((l) => l.link),
    ["result", "result-1", "result-2-dev"],
  );
  assert.deepEqual(
    outLinkNames("result", roots, outLinkStyle([])).map((l) => l.link),
    ["result", "result-2", "result-3-dev"],
  );
});

test("Nix's flake errors are told apart by cause", () => {
  const i = parseInstallable(".#nope", "/w", missing, none) as FlakeInstallable;
  const missingAttr = flakeEvalError(
    "error: flake 'git+file:///w' does not provide attribute 'packages.x86_64-linux.nope', 'legacyPackages.x86_64-linux.nope' or 'nope'\n",
    i,
  );
  assert.equal(missingAttr.code, "FLAKE_ATTRIBUTE_MISSING");
  assert.deepEqual(missingAttr.details?.["tried"], [
    "packages.x86_64-linux.nope",
    "legacyPackages.x86_64-linux.nope",
    "nope",
  ]);
  assert.equal(
    flakeEvalError(
      "path '/x' does not contain a 'flake.nix', searching up\nerror: could not find a flake.nix file\n",
      i,
    ).code,
    "NOT_A_FLAKE",
  );
  // Nix 2.8's other ways of saying no flake.nix was found searching up from a directory.
  assert.equal(
    flakeEvalError(
      "error: path '/g' is not part of a flake (neither it nor its parent directories contain a 'flake.nix' file)\n",
      i,
    ).code,
    "NOT_A_FLAKE",
  );
  assert.equal(
    flakeEvalError("error: unable to find a flake before encountering filesystem boundary at '/mnt'\n", i)
      .code,
    "NOT_A_FLAKE",
  );
  assert.equal(
    flakeEvalError("error: getting status of '/gone': No such file or directory\n", i).code,
    "FLAKE_NOT_FOUND",
  );
  assert.equal(
    flakeEvalError(
      "fatal: '/nonexist' does not appear to be a git repository\nerror: program 'git' failed with exit code 128\n",
      i,
    ).code,
    "FLAKE_NOT_FOUND",
  );
  const net = flakeEvalError(
    "warning: error: unable to download 'https://api.github.com/x': Couldn't resolve host name (6); retrying in 256 ms\nerror: unable to download 'https://api.github.com/x': Couldn't resolve host name (6)\n",
    i,
  );
  assert.equal(net.code, "FLAKE_INPUT_UNAVAILABLE");
  assert.match(net.hint ?? "", /--override-input/);
  // A word that names nothing here is a registry name to Nix: offline, the registry is what fails,
  // not an input (a typo of a file name must not be told to use --override-input).
  const registry =
    "error: unable to download 'https://github.com/NixOS/flake-registry/raw/master/flake-registry.json': Couldn't resolve host name (6)\n";
  const typo = flakeEvalError(
    registry,
    parseInstallable("grpah", "/w/grpah", missing, none) as FlakeInstallable,
  );
  assert.equal(typo.code, "FLAKE_INPUT_UNAVAILABLE");
  assert.match(typo.message, /grpah is no file or directory here.*flake registry/);
  assert.doesNotMatch(typo.hint ?? "", /--override-input/);
  assert.match(typo.hint ?? "", /\.\/grpah/);
  // An input named by registry (inputs.nixpkgs.url = "nixpkgs") is still an input.
  assert.match(flakeEvalError(registry, i).hint ?? "", /--override-input/);
  const evalError = flakeEvalError(
    "error: cannot add a string to an integer\n\n       at /nix/store/gpwxv37q6libkd2j8nc92d96fk6l5ycr-source/flake.nix:1:117:\n\n(use '--show-trace' to show detailed location information)\n",
    i,
    { storePath: "/nix/store/gpwxv37q6libkd2j8nc92d96fk6l5ycr-source", dir: "/home/me/app" },
  );
  assert.equal(evalError.code, "NIX_EVAL_FAILED");
  assert.match(evalError.message, /at \/home\/me\/app\/flake\.nix:1:117/);
  assert.doesNotMatch(evalError.hint ?? "", /doctor/);
});

test("check verdicts come from the records: passed, cached, failed, dependency failed, eval failed, evaluated", () => {
  const rec = (drv: string, status: DerivationRecord["status"]): DerivationRecord => ({
    drv,
    name: drv,
    status,
    builder: status === "built" || status === "failed" ? "local1" : null,
    slot: null,
    attempts: 1,
    retries: [],
    readyMs: 0,
    startedMs: 0,
    finishedMs: 10,
    spans: status === "built" ? [{ phase: "build", builder: "local1", slot: 1, startMs: 0, endMs: 500 }] : [],
    error: status === "failed" ? "builder failed with exit code 3" : null,
  });
  const rows = checkRows(
    [
      { name: "checks.s.a", kind: "check", drv: "a", built: true },
      { name: "checks.s.b", kind: "check", drv: "b", built: true },
      { name: "checks.s.c", kind: "check", drv: "c", built: true },
      { name: "checks.s.d", kind: "check", drv: "d", built: true },
      { name: "checks.s.e", kind: "check", error: "boom", built: true },
      { name: "packages.s.p", kind: "package", drv: "p", built: false },
    ],
    [rec("a", "built"), rec("b", "cached"), rec("c", "failed"), rec("d", "skipped")],
  );
  assert.deepEqual(
    rows.map((r) => [r.name, r.status, r.cached, r.buildMs]),
    [
      ["checks.s.a", "passed", false, 500],
      ["checks.s.b", "passed", true, null],
      ["checks.s.c", "failed", false, null],
      ["checks.s.d", "dependency failed", false, null],
      ["checks.s.e", "eval failed", false, null],
      ["packages.s.p", "evaluated", false, null],
    ],
  );
  assert.deepEqual(
    rows.filter(isCheckFailure).map((r) => r.name),
    ["checks.s.c", "checks.s.d", "checks.s.e"],
  );
});
