/** A failure Nix or ssh prints, recognised from its text. */
export interface KnownFailure {
  /** The check that diagnoses this cause in detail. */
  check: string;
  cause: string;
}

const KNOWN: { pattern: RegExp; check: string; cause: string }[] = [
  {
    pattern: /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/,
    check: "host-key",
    cause: "ssh refused the builder's host key",
  },
  {
    pattern: /Could not resolve hostname/,
    check: "dns",
    cause: "the builder's host name does not resolve",
  },
  {
    pattern: /Connection refused|No route to host|Connection timed out|Network is unreachable/,
    check: "tcp",
    cause: "the builder's SSH port cannot be reached",
  },
  {
    pattern: /bad permissions|UNPROTECTED PRIVATE KEY FILE/,
    check: "identity",
    cause: "ssh ignored the identity file because others can read it",
  },
  {
    pattern: /Permission denied \(/,
    check: "auth",
    cause: "the builder refused every SSH key offered",
  },
  {
    pattern: /could not set permissions on '\/nix\/var\/nix\/profiles\/per-user'/,
    check: "store-mode",
    cause:
      "the builder's Nix is a single-user install that the login user cannot write (no nix-daemon to talk to)",
  },
  {
    pattern: /nix-daemon: (?:command )?not found|nix-store: (?:command )?not found/,
    check: "remote-nix",
    cause: "the Nix command the protocol needs is not on the PATH of non-interactive SSH sessions",
  },
  {
    pattern: /you are not privileged to build input-addressed derivations|lacks a valid signature/,
    check: "trust",
    cause: "the builder's Nix daemon does not trust the login user",
  },
  {
    // The builder's daemon closes the socket; which of these Nix 2.8 prints is a race (the client
    // reads the close as a reset, as an end of file, or writes into it: a broken pipe).
    pattern:
      /is not allowed to connect to the Nix daemon|(?:splicing data from|unexpected EOF from) daemon socket|remote store 'daemon': error: (?:reading from file: Connection reset by peer|unexpected end-of-file|writing to file: Broken pipe)/,
    check: "trust",
    cause: "the builder's nix-daemon hangs up on the login user (not in its allowed-users)",
  },
  {
    pattern: /unable to start any build; either increase '--max-jobs' or enable remote builds/,
    check: "local.trusted-user",
    cause: "this machine's Nix ignored the builders it was given (an untrusted user under nix-daemon)",
  },
  {
    pattern: /No space left on device|database or disk is full/,
    check: "store-space",
    cause: "the builder's store ran out of space",
  },
  {
    pattern: /is required to build .*, but I am a/,
    check: "systems",
    cause: "the builder cannot build this system or these features",
  },
];

/** Recognises the cause of a Nix or ssh failure from its stderr. */
export function classifyFailure(stderr: string): KnownFailure | undefined {
  for (const k of KNOWN) if (k.pattern.test(stderr)) return { check: k.check, cause: k.cause };
  return undefined;
}

const NOISE = [
  /^debug\d?:/,
  /^these \d+ derivations? will be built:/,
  /^this derivation will be built:/,
  /^\/nix\/store\//,
  /^building '/,
  /^copying \d+ paths?/,
  /^error: builder for .* failed with exit code/,
  /^killing process \d+/,
  /^Store URL:/,
  /^OpenSSH_/,
];

/**
 * What Nix printed that matters, without progress noise: the line that names a known cause
 * (the build hook buries it above its own "unable to start any build") and the last lines.
 */
export function symptomOf(stderr: string): string {
  const lines = stderr
    .split("\n")
    .map((l) => l.trim().slice(0, 300))
    .filter((l) => l && !NOISE.some((n) => n.test(l)));
  const tail = lines.slice(-3);
  const known = KNOWN.find((k) => lines.some((l) => k.pattern.test(l)));
  const cause = known && lines.find((l) => known.pattern.test(l));
  if (!cause || tail.includes(cause)) return tail.join("\n");
  const closing = lines.filter((l) => l.startsWith("error:")).at(-1) ?? lines.at(-1) ?? "";
  return [cause, closing].join("\n");
}
