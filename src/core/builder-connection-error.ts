import type { Builder } from "./builder.js";
import { ExitCode, NixpoolError, type ErrorCode } from "./errors.js";
import type { SshFailure } from "./ssh-errors.js";

/** The sentence and hint for each way ssh to a builder fails. */
export function builderConnectionError(b: Builder, cause: SshFailure, stderr: string): NixpoolError {
  const table: Record<SshFailure, [ErrorCode, string, string]> = {
    "host-key-mismatch": [
      "HOST_KEY_MISMATCH",
      `Builder ${b.name} (${b.host}) presented a host key that does not match its pinned key; nixpool refused to connect.`,
      `If ${b.name} was reinstalled, verify its new key out of band and update hostKey in the inventory; check with: nixpool doctor ${b.name}`,
    ],
    "host-key-unknown": [
      "HOST_KEY_UNKNOWN",
      `Builder ${b.name} has no pinned host key that ssh accepts.`,
      `Add its key (verified out of band) as hostKey in the inventory; check with: nixpool doctor ${b.name}`,
    ],
    "auth-denied": [
      "BUILDER_AUTH_FAILED",
      `Builder ${b.name} refused the login key ${b.identityFile ?? "(ssh default keys)"}.`,
      `Authorise the key's .pub on ${b.name} for user ${b.user ?? "(default)"}; check with: nixpool doctor ${b.name}`,
    ],
    "identity-unreadable": [
      "IDENTITY_UNUSABLE",
      `The identity file ${b.identityFile ?? ""} of builder ${b.name} cannot be used (missing, unreadable or too open).`,
      `Fix it (chmod 600 ${b.identityFile ?? "KEY"}); check with: nixpool doctor ${b.name}`,
    ],
    refused: [
      "BUILDER_UNREACHABLE",
      `Builder ${b.name} (${b.host}:${b.port}) refused the connection.`,
      `Is sshd running there? Check with: nixpool doctor ${b.name}`,
    ],
    timeout: [
      "BUILDER_UNREACHABLE",
      `Builder ${b.name} (${b.host}:${b.port}) did not answer in time.`,
      `Check the network path; nixpool doctor ${b.name}`,
    ],
    unreachable: [
      "BUILDER_UNREACHABLE",
      `Builder ${b.name} (${b.host}) is unreachable from here.`,
      `Check the network path; nixpool doctor ${b.name}`,
    ],
    dns: [
      "BUILDER_UNREACHABLE",
      `The host name ${b.host} of builder ${b.name} does not resolve.`,
      `Fix host in the inventory; nixpool doctor ${b.name}`,
    ],
    unknown: [
      "BUILDER_CONNECT_FAILED",
      `nixpool could not connect to builder ${b.name}.`,
      `Run: nixpool doctor ${b.name}`,
    ],
  };
  const [code, message, hint] = table[cause];
  return new NixpoolError(code, message, {
    hint,
    details: { builder: b.name, sshError: stderr.trim().split("\n").slice(-5).join("\n") },
  });
}

/** No builder to offload to: none declared, or none with a pinned host key (nixpool uses no other). */
export function noBuildersError(declared: number): NixpoolError {
  return new NixpoolError(
    "NO_BUILDERS",
    declared === 0 ? "There are no builders to offload to." : "No builder has a pinned host key.",
    {
      hint:
        declared === 0
          ? "Start a local pool (nixpool local up) or add builders to nixpool.toml."
          : "Add hostKey to each builder in nixpool.toml (ssh-keyscan HOST shows it; verify it out of band).",
      exitCode: ExitCode.usage,
    },
  );
}
