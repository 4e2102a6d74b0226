const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g;

const secrets = new Set<string>();

/** Registers a secret (an API token, say) so that every later redact() hides it. */
export function registerSecret(secret: string): void {
  if (secret.length >= 6) secrets.add(secret);
}

/** Removes tokens and private key material from text meant for logs, errors or --json. */
export function redact(text: string): string {
  let out = text.replace(PRIVATE_KEY, "[private key redacted]");
  for (const s of secrets) {
    out = out.split(s).join("[redacted]");
    // Inside JSON text (--json, error details) a token with " or \ appears escaped.
    const escaped = JSON.stringify(s).slice(1, -1);
    if (escaped !== s) out = out.split(escaped).join("[redacted]");
  }
  out = out.replace(/(Authorization:\s*Bearer\s+)\S+/gi, "$1[redacted]");
  return out;
}

/**
 * Text for a terminal: redacted, with control characters other than newline and tab shown as
 * "?" (an API answer or a server name must not move the cursor or retitle the terminal).
 */
export function redactForTerminal(text: string): string {
  // eslint-disable-next-line no-control-regex
  return redact(text).replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, "?");
}
