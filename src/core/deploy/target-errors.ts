import { NixpoolError, type ErrorCode } from "../errors.js";
import type { SshFailure } from "../ssh-errors.js";
import type { TargetSsh } from "./target-ssh-argv.js";

type Target = Pick<TargetSsh, "name" | "host" | "port" | "user" | "identityFile">;

/** The sentence and hint for each way ssh to a deploy target fails. */
export function targetConnectionError(t: Target, cause: SshFailure, stderr: string): NixpoolError {
  const where = `${t.host}:${t.port}`;
  const table: Record<SshFailure, [ErrorCode, string, string]> = {
    "host-key-mismatch": [
      "HOST_KEY_MISMATCH",
      `Target ${t.name} (${where}) presented a host key that does not match its pinned key; nixpool refused to connect and sent nothing.`,
      `If ${t.name} was reinstalled, verify its new key out of band (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on it) and update hostKey of target ${t.name} in nixpool.toml.`,
    ],
    "host-key-unknown": [
      "HOST_KEY_UNKNOWN",
      `Target ${t.name} (${where}) has no pinned host key that ssh accepts.`,
      `Set hostKey of target ${t.name} in nixpool.toml to its public host key line, verified out of band.`,
    ],
    "auth-denied": [
      "TARGET_AUTH_FAILED",
      `Target ${t.name} (${where}) refused the login of ${t.user ?? "the default user"} with ${t.identityFile ?? "ssh's default keys"}.`,
      `Authorise the key's .pub for ${t.user ?? "that user"} on ${t.name} (or sign it: nixpool ca sign), then retry.`,
    ],
    "identity-unreadable": [
      "IDENTITY_UNUSABLE",
      `The identity file ${t.identityFile ?? ""} of target ${t.name} cannot be used (missing, unreadable or too open).`,
      `Fix it (chmod 600 ${t.identityFile ?? "KEY"}) or set identityFile of target ${t.name} in nixpool.toml.`,
    ],
    refused: [
      "TARGET_UNREACHABLE",
      `Target ${t.name} (${where}) refused the connection.`,
      `Is sshd running on ${t.name}? Check with: ssh -p ${t.port} ${t.host}`,
    ],
    timeout: [
      "TARGET_UNREACHABLE",
      `Target ${t.name} (${where}) did not answer in time.`,
      `Check the network path to ${t.host} and that sshd listens on port ${t.port}.`,
    ],
    unreachable: [
      "TARGET_UNREACHABLE",
      `Target ${t.name} (${t.host}) is unreachable from here.`,
      `Check the network path to ${t.host}.`,
    ],
    dns: [
      "TARGET_UNREACHABLE",
      `The host name ${t.host} of target ${t.name} does not resolve.`,
      `Fix host of target ${t.name} in nixpool.toml.`,
    ],
    unknown: [
      "TARGET_CONNECT_FAILED",
      `nixpool could not connect to target ${t.name} (${where}).`,
      `Try it by hand: ssh -p ${t.port} ${t.user ? `${t.user}@` : ""}${t.host} true`,
    ],
  };
  const [code, message, hint] = table[cause];
  return new NixpoolError(code, message, {
    hint,
    details: { target: t.name, sshError: stderr.trim().split("\n").slice(-5).join("\n") },
  });
}

/** Why `sudo -n` refused to run a command, read from its stderr; undefined when sudo did not refuse. */
export type SudoRefusal = "password-required" | "not-allowed" | "missing";

/** Reads sudo's refusal (never a prompt: -n) from the remote stderr. */
export function classifySudoRefusal(stderr: string): SudoRefusal | undefined {
  if (/sudo: (a password is required|a terminal is required)/i.test(stderr)) return "password-required";
  if (/is not in the sudoers file|is not allowed to (execute|run sudo)|may not run sudo/i.test(stderr))
    return "not-allowed";
  if (/sudo: (command )?not found|sudo: No such file/i.test(stderr)) return "missing";
  return undefined;
}

/** The error of a target whose user cannot run commands through `sudo -n`. */
export function targetSudoError(t: Target, why: SudoRefusal, stderr: string): NixpoolError {
  const user = t.user ?? "the login user";
  const message: Record<SudoRefusal, string> = {
    "password-required": `Target ${t.name} asks ${user} for a password for sudo; nixpool runs sudo -n and never types one.`,
    "not-allowed": `Target ${t.name} does not allow ${user} to run commands with sudo.`,
    missing: `Target ${t.name} has no sudo, and its login user ${user} is not root.`,
  };
  const hint =
    why === "missing"
      ? `Install sudo on ${t.name}, or log in as root (user = "root", sudo = false for target ${t.name}).`
      : `Give ${user} passwordless sudo on ${t.name} (a NOPASSWD rule in /etc/sudoers.d, or pam-ussh with nixpool's CA: see docs/deploy.md#certificates-for-sudo).`;
  return new NixpoolError("TARGET_SUDO_REFUSED", message[why], {
    hint,
    details: { target: t.name, user, stderr: stderr.trim().split("\n").slice(-5).join("\n") },
  });
}
