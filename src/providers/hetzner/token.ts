import { readFile } from "node:fs/promises";
import { run } from "../../adapters/runner.js";
import { configError } from "../../core/errors.js";
import { registerSecret } from "../../core/redact.js";
import { DEFAULT_ENDPOINT } from "./client.js";

export interface TokenSources {
  /** --token-file */
  tokenFile?: string | undefined;
  env: Record<string, string | undefined>;
}

/** Where the token came from, for messages (never the token itself). */
export interface ResolvedToken {
  token: string;
  source: string;
}

const HINT =
  'Set HCLOUD_TOKEN, pass --token-file FILE, or set NIXPOOL_HCLOUD_TOKEN_COMMAND to a command that prints it (e.g. "pass show hetzner/token").';

/** Checks a token's shape: one word of visible ASCII (an HTTP header cannot carry more). */
function checkToken(raw: string, source: string): string {
  const token = raw.trim();
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw configError(
      "HCLOUD_TOKEN_INVALID",
      `The Hetzner Cloud token from ${source} is empty or has spaces or non-ASCII characters in it.`,
      { hint: HINT },
    );
  }
  registerSecret(token);
  return token;
}

/**
 * Finds the API token: --token-file, else HCLOUD_TOKEN, else NIXPOOL_HCLOUD_TOKEN_FILE, else the
 * command in NIXPOOL_HCLOUD_TOKEN_COMMAND (split at spaces, run without a shell; its stdout).
 * The token is registered as a secret, so it never reaches output.
 */
export async function resolveToken(s: TokenSources): Promise<ResolvedToken> {
  const fromFile = async (path: string, source: string) => {
    const text = await readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
      throw configError(
        "HCLOUD_TOKEN_FILE_UNREADABLE",
        `Cannot read the Hetzner Cloud token file ${path}: ${e.code ?? e.message}.`,
        {
          hint: HINT,
        },
      );
    });
    return { token: checkToken(text, source), source };
  };
  if (s.tokenFile) return fromFile(s.tokenFile, `--token-file ${s.tokenFile}`);
  const envToken = s.env["HCLOUD_TOKEN"];
  if (envToken) return { token: checkToken(envToken, "HCLOUD_TOKEN"), source: "HCLOUD_TOKEN" };
  const envFile = s.env["NIXPOOL_HCLOUD_TOKEN_FILE"];
  if (envFile) return fromFile(envFile, `NIXPOOL_HCLOUD_TOKEN_FILE (${envFile})`);
  const command = s.env["NIXPOOL_HCLOUD_TOKEN_COMMAND"];
  if (command) {
    const argv = command.trim().split(/\s+/);
    const r = await run(argv, { timeout: 60_000, reject: false });
    if (r.exitCode !== 0) {
      throw configError(
        "HCLOUD_TOKEN_COMMAND_FAILED",
        `The token command NIXPOOL_HCLOUD_TOKEN_COMMAND (${argv[0] ?? ""}) exited with ${r.exitCode}.`,
        { hint: `Run it yourself to see why: ${command}` },
      );
    }
    return {
      token: checkToken(r.stdout.split("\n")[0] ?? "", "NIXPOOL_HCLOUD_TOKEN_COMMAND"),
      source: "NIXPOOL_HCLOUD_TOKEN_COMMAND",
    };
  }
  throw configError("HCLOUD_TOKEN_MISSING", "No Hetzner Cloud API token is set.", { hint: HINT });
}

/**
 * HCLOUD_ENDPOINT like the official CLI, else the public API. The token and the workers' private
 * host keys travel to it, so plain http is refused except to this machine (the emulator) or
 * with NIXPOOL_HCLOUD_INSECURE_HTTP=1.
 */
export function resolveEndpoint(env: Record<string, string | undefined>): string {
  const endpoint = env["HCLOUD_ENDPOINT"] || DEFAULT_ENDPOINT;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw configError(
      "HCLOUD_ENDPOINT_INVALID",
      `HCLOUD_ENDPOINT ${JSON.stringify(endpoint)} is not a URL.`,
      {
        hint: `Set it to the API's base URL (default ${DEFAULT_ENDPOINT}), or unset it.`,
      },
    );
  }
  const loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(url.hostname);
  const insecureOk = url.protocol === "http:" && (loopback || env["NIXPOOL_HCLOUD_INSECURE_HTTP"] === "1");
  if (url.protocol !== "https:" && !insecureOk) {
    throw configError(
      "HCLOUD_ENDPOINT_INSECURE",
      `HCLOUD_ENDPOINT ${url.origin} is not https; the API token and the workers' host keys would travel in clear text.`,
      {
        hint: `Use an https URL (default ${DEFAULT_ENDPOINT}); plain http is accepted on 127.0.0.1 (the emulator) or with NIXPOOL_HCLOUD_INSECURE_HTTP=1.`,
      },
    );
  }
  return endpoint;
}
