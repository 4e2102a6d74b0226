import { test } from "node:test";
import assert from "node:assert/strict";
import { evalFailure, findNixPosition, splitNixMessages } from "../../src/core/nix-eval-errors.js";

// Verbatim stderr of Nix 2.8 (nix-build --log-format internal-json, and plain nix-instantiate),
// on a machine without the nixbld group, so every run starts with Nix's warning.
const E = "\u001b";
const WARNING_JSON = `@nix {"action":"msg","level":0,"msg":"warning: the group 'nixbld' specified in 'build-users-group' does not exist"}`;
const json = (o: unknown) => `@nix ${JSON.stringify(o)}`;
const missingJson = (path: string) =>
  json({
    action: "msg",
    column: null,
    file: null,
    level: 0,
    line: null,
    msg: `${E}[31;1merror:${E}[0m getting status of '${E}[35;1m${path}${E}[0m': ${E}[35;1mNo such file or directory${E}[0m`,
  });
const SYNTAX_JSON = json({
  action: "msg",
  column: 22,
  file: "/w/syntax.nix",
  level: 0,
  line: 1,
  msg: `${E}[31;1merror:${E}[0m syntax error, unexpected end of file, expecting ';'\n\n       ${E}[34;1mat ${E}[35;1m/w/syntax.nix:1:22${E}[0m:\n\n            1| let x = 1; in { a = x\n             |                      ${E}[31;1m^${E}[0m`,
});
const THROW_JSON = [
  WARNING_JSON,
  json({
    action: "msg",
    column: null,
    file: null,
    level: 0,
    line: null,
    msg: `${E}[31;1merror:${E}[0m boom`,
  }),
  json({ action: "msg", level: 0, msg: "(use '--show-trace' to show detailed location information)" }),
].join("\n");
const SYNTAX_PLAIN = [
  "warning: the group 'nixbld' specified in 'build-users-group' does not exist",
  "error: syntax error, unexpected end of file, expecting ';'",
  "",
  "       at /w/syntax.nix:1:22:",
  "",
  "            1| let x = 1; in { a = x",
  "             |                      ^",
  "",
].join("\n");

test("a missing top-level file is NIX_FILE_NOT_FOUND (exit 2), never the warning before it", () => {
  const e = evalFailure(`${WARNING_JSON}\n${missingJson("/w/nope.nix")}\n`, "/w/nope.nix");
  assert.equal(e?.code, "NIX_FILE_NOT_FOUND");
  assert.equal(e?.exitCode, 2);
  assert.equal(e?.message, "The Nix file /w/nope.nix does not exist.");
  assert.doesNotMatch(e?.hint ?? "", /doctor/);
  assert.doesNotMatch(String(e?.details?.["nixError"]), /warning/);
  // A directory without default.nix, in the plain format.
  const dir = evalFailure("error: opening file '/w/d/default.nix': No such file or directory\n", "/w/d/");
  assert.equal(dir?.code, "NIX_FILE_NOT_FOUND");
});

test("a missing imported file is an evaluation error naming that file", () => {
  const e = evalFailure(`${WARNING_JSON}\n${missingJson("/w/missing-dep.nix")}\n`, "/w/imp.nix");
  assert.equal(e?.code, "NIX_EVAL_FAILED");
  assert.equal(e?.exitCode, 1);
  assert.match(
    e?.message ?? "",
    /^Nix could not evaluate \/w\/imp\.nix: getting status of '\/w\/missing-dep\.nix'/,
  );
});

test("syntax errors in either log format carry Nix's own lines and file:line:column", () => {
  for (const stderr of [`${WARNING_JSON}\n${SYNTAX_JSON}\n`, SYNTAX_PLAIN]) {
    const e = evalFailure(stderr, "/w/syntax.nix");
    assert.equal(e?.code, "NIX_EVAL_FAILED");
    assert.equal(
      e?.message,
      "Nix could not evaluate /w/syntax.nix: syntax error, unexpected end of file, expecting ';' (at /w/syntax.nix:1:22).",
    );
    assert.deepEqual(e?.details?.["position"], { file: "/w/syntax.nix", line: 1, column: 22 });
    const nixError = String(e?.details?.["nixError"]);
    assert.match(nixError, /^error: syntax error/);
    assert.match(nixError, /at \/w\/syntax\.nix:1:22:/);
    assert.match(nixError, /1\| let x = 1; in \{ a = x/);
    assert.doesNotMatch(nixError, /warning/);
    assert.ok(!nixError.includes(E), "no colours");
    assert.match(e?.hint ?? "", /^Fix the expression at \/w\/syntax\.nix:1:22/);
  }
});

test("an error without a position is recognised by Nix's --show-trace hint or its wording", () => {
  assert.equal(evalFailure(THROW_JSON, "/w/t.nix")?.message, "Nix could not evaluate /w/t.nix: boom.");
  const attr = evalFailure(
    "error: attribute 'b' in selection path 'b' not found\n       Did you mean a?\n",
    "/w/set.nix",
  );
  assert.equal(attr?.code, "NIX_EVAL_FAILED");
  assert.match(String(attr?.details?.["nixError"]), /Did you mean a\?/);
});

test("build failures, connection failures and warnings alone are not evaluation failures", () => {
  const build = [
    WARNING_JSON,
    json({ action: "msg", level: 0, msg: "error: builder for '/nix/store/x-a.drv' failed with exit code 1" }),
  ].join("\n");
  assert.equal(evalFailure(build, "/w/a.nix"), undefined);
  assert.equal(evalFailure("error: unexpected end-of-file\n", "/w/a.nix"), undefined);
  assert.equal(evalFailure("error: interrupted by the user\n", "/w/a.nix"), undefined);
  assert.equal(evalFailure(`${WARNING_JSON}\n`, "/w/a.nix"), undefined);
  assert.equal(evalFailure("", "/w/a.nix"), undefined);
});

test("messages split per JSON line or per plain error block; positions found in either", () => {
  assert.deepEqual(splitNixMessages(`not nix\n${SYNTAX_PLAIN}these 2 paths will be fetched\n`).length, 2);
  assert.deepEqual(findNixPosition("error: x\n       at «string»:1:1:\n"), {
    file: "«string»",
    line: 1,
    column: 1,
  });
  assert.equal(findNixPosition("error: x"), undefined);
});
