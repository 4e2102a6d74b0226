#!/usr/bin/env node
// sshd's AuthorizedKeysCommand / AuthorizedPrincipalsCommand entry point. It loads nothing but the
// index reader, so a login costs one node start and one small file read:
//   keys-command.js --state-dir DIR [--protocol ssh-ng|ssh|gateway] USER
//   keys-command.js --state-dir DIR --principals [--key-id KEYID] USER
// Exit 0 with no output means "no keys"; any error exits 1, which sshd treats as a refusal.
import type { AccessProtocol } from "../core/access/authorized-keys.js";
import { lookupAuthorizedKeys, lookupGatewayKeys, lookupPrincipals } from "./keys-lookup.js";
import { resolveAccessPaths } from "./paths.js";
import { ExitCode } from "../core/errors.js";

async function main(argv: string[]): Promise<number> {
  let stateDir = process.env["NIXPOOL_STATE_DIR"];
  let protocol: AccessProtocol = "ssh-ng";
  let gateway = false;
  let principals = false;
  let keyId: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--state-dir") stateDir = argv[++i];
    else if (a === "--protocol") {
      const p = argv[++i];
      if (p === "gateway") gateway = true;
      else if (p !== "ssh-ng" && p !== "ssh") return usage(`--protocol must be ssh-ng, ssh or gateway`);
      else protocol = p;
    } else if (a === "--principals") principals = true;
    else if (a === "--key-id") keyId = argv[++i] ?? "";
    else if (a !== undefined) rest.push(a);
  }
  const [user] = rest;
  if (!stateDir || user === undefined || rest.length !== 1) return usage("give --state-dir DIR and one USER");
  const { indexDir, sshdDir } = resolveAccessPaths(stateDir);
  const nowMs = Date.now();
  const lines = gateway
    ? await lookupGatewayKeys(user, { sshdDir })
    : principals
      ? await lookupPrincipals(user, { indexDir, nowMs, keyId })
      : await lookupAuthorizedKeys(user, { indexDir, protocol, nowMs });
  if (lines.length > 0) process.stdout.write(`${lines.join("\n")}\n`);
  return ExitCode.ok;
}

function usage(message: string): number {
  process.stderr.write(`nixpool keys-command: ${message}\n`);
  return ExitCode.usage;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`nixpool keys-command: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = ExitCode.failed;
  },
);
