/** Why an ssh connection to a builder failed, read from ssh's own stderr. */
export type SshFailure =
  | "host-key-mismatch"
  | "host-key-unknown"
  | "auth-denied"
  | "refused"
  | "timeout"
  | "unreachable"
  | "dns"
  | "identity-unreadable"
  | "unknown";

/** Classifies ssh's stderr (BatchMode, StrictHostKeyChecking yes) into one cause. */
export function classifySshFailure(stderr: string): SshFailure {
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed/i.test(stderr))
    return "host-key-mismatch";
  if (/No (ED25519|RSA|ECDSA)? ?host key is known for|Host key verification failed/i.test(stderr))
    return "host-key-unknown";
  if (
    /bad permissions|UNPROTECTED PRIVATE KEY FILE|no such identity|Load key .*: (Permission denied|invalid format)/i.test(
      stderr,
    )
  )
    return "identity-unreadable";
  if (/Permission denied \(/i.test(stderr)) return "auth-denied";
  if (/Connection refused/i.test(stderr)) return "refused";
  if (/Connection timed out|Operation timed out|timed out during banner/i.test(stderr)) return "timeout";
  if (/No route to host|Network is unreachable/i.test(stderr)) return "unreachable";
  if (/Could not resolve hostname|Name or service not known/i.test(stderr)) return "dns";
  return "unknown";
}

/** Which builders Nix says it could not connect to: "cannot open connection to remote store 'ssh-ng://X'". */
export function machinesWithConnectionErrors(text: string): string[] {
  const found = new Set<string>();
  for (const m of text.matchAll(
    /cannot (?:open connection to remote store|build on) '([a-z-]+:\/\/[^']+)'/g,
  )) {
    if (m[1]) found.add(m[1]);
  }
  return [...found];
}
