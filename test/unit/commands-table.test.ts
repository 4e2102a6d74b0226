import { test } from "node:test";
import assert from "node:assert/strict";
import { Command, Help } from "commander";
import { COMMANDS, commandNameOf } from "../../src/cli/commands.js";
import type { Context } from "../../src/cli/context.js";

test("the lazy command table says what each command module registers", async () => {
  const help = new Help();
  for (const entry of COMMANDS) {
    const program = new Command("nixpool");
    (await entry.load())(program, (): Context => assert.fail("no context while registering"));
    assert.deepEqual(
      program.commands.map((c) => c.name()),
      [entry.name],
      `${entry.name}: the module registers exactly that command`,
    );
    const cmd = program.commands[0] as Command;
    assert.equal(cmd.description(), entry.description, `${entry.name}: description`);
    assert.equal(help.subcommandTerm(cmd), entry.term, `${entry.name}: term in nixpool --help`);
  }
  assert.equal(new Set(COMMANDS.map((c) => c.name)).size, COMMANDS.length);
});

test("the command an argv runs: the first operand past the program's own options, or help's", () => {
  const argv = (...a: string[]) => ["node", "nixpool", ...a];
  assert.equal(commandNameOf(argv("builders", "--json")), "builders");
  assert.equal(commandNameOf(argv("--state-dir", "/s", "--inventory", "x.toml", "worker", "up")), "worker");
  assert.equal(commandNameOf(argv("--state-dir=/s", "doctor")), "doctor");
  assert.equal(commandNameOf(argv("help", "access")), "access");
  assert.equal(commandNameOf(argv("--version")), undefined);
  assert.equal(commandNameOf(argv("--help")), undefined);
  assert.equal(commandNameOf(argv("help")), undefined);
  assert.equal(commandNameOf(argv()), undefined);
});
