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
