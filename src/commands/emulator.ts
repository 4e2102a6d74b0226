import { readFile } from "node:fs/promises";
import { configError } from "../core/errors.js";
import { registerSecret } from "../core/redact.js";
import type { RegisterCommands } from "../cli/commands.js";
import { parseNumberFlag } from "../core/number-flag.js";
import { noBooter, type ServerBooter } from "../emulator/hetzner/booter.js";
import { startHetznerEmulator } from "../emulator/hetzner/serve.js";
import { statePaths } from "../config/state-paths.js";
import { isLoopbackHost } from "../core/listen-address.js";

interface EmulatorFlags {
  port: string;
  host: string;
  boot: boolean;
  token?: string[];
  tokenFile?: string;
  log?: boolean;
  createMs?: string;
  snapshotCreateMs?: string;
  bootMs?: string;
  provisionMs?: string;
  imageMs?: string;
}

/** nixpool emulator hetzner: serves the Hetzner Cloud API locally until interrupted. */
export const registerEmulator: RegisterCommands = (program, context) => {
  const emulator = program.command("emulator").description("local stand-ins for remote services");
  emulator
    .command("hetzner")
    .description("serve the Hetzner Cloud API on this machine; servers boot as local builder hosts")
    .option("--port <port>", "TCP port (0: any free port)", "8080")
    .option("--host <address>", "address to listen on", "127.0.0.1")
    .option("--no-boot", "do not start a machine per server (API only)")
    .option(
      "--token <token...>",
      "accept only these API tokens (default: any; visible in ps, prefer --token-file)",
    )
    .option("--token-file <file>", "accept only the API tokens in this file, one a line (default: any)")
    .option("--create-ms <ms>", "duration of the create_server action")
    .option(
      "--snapshot-create-ms <ms>",
      "duration of create_server for a server from a snapshot (default: --create-ms)",
    )
    .option("--boot-ms <ms>", "time from creation until SSH answers")
    .option(
      "--provision-ms <ms>",
      "time cloud-init then takes to install the user_data's packages (Nix) on a server from a system image",
    )
    .option("--image-ms <ms>", "duration of the create_image action (a snapshot is creating until then)")
    .option("--log", "print one line per request")
    .action(async (opts: EmulatorFlags) => {
      const ctx = context();
      const port = parseNumberFlag("--port", opts.port, {
        integer: true,
        min: 0,
        example: "nixpool emulator hetzner --port 8080",
      });
      const ms = (flag: string, v: string | undefined) =>
        v === undefined
          ? undefined
          : parseNumberFlag(flag, v, {
              integer: true,
              min: 0,
              example: `nixpool emulator hetzner ${flag} 500`,
            });
      const createMs = ms("--create-ms", opts.createMs);
      const snapshotCreateMs = ms("--snapshot-create-ms", opts.snapshotCreateMs);
      const bootMs = ms("--boot-ms", opts.bootMs);
      const provisionMs = ms("--provision-ms", opts.provisionMs);
      const imageMs = ms("--image-ms", opts.imageMs);
      const tokens = [...(opts.token ?? []), ...(opts.tokenFile ? await readTokenFile(opts.tokenFile) : [])];
      const timing = {
        ...(createMs !== undefined ? { createMs } : {}),
        ...(snapshotCreateMs !== undefined ? { snapshotCreateMs } : {}),
        ...(bootMs !== undefined ? { bootMs } : {}),
        ...(provisionMs !== undefined ? { provisionMs } : {}),
        ...(imageMs !== undefined ? { imageMs } : {}),
      };
      // Every API client may put its SSH key on a machine that runs as root on this host.
      if (opts.boot && !isLoopbackHost(opts.host) && !opts.token && !opts.tokenFile) {
        throw configError(
          "EMULATOR_OPEN_TO_NETWORK",
          `The emulator would boot machines for any client that reaches ${opts.host}; they run as root on this machine.`,
          {
            hint: "Listen on 127.0.0.1 (the default), or require tokens: nixpool emulator hetzner --host ADDRESS --token-file FILE",
          },
        );
      }
      // Flags are checked above, before stale machines are stopped.
      const booter: ServerBooter = opts.boot
        ? await loadLocalBooter(statePaths(ctx.stateDir).emulator.hetznerDir, (l) => ctx.output.err(l))
        : noBooter;
      const running = await startHetznerEmulator({
        port,
        hostname: opts.host,
        booter,
        timing,
        ...(opts.token || opts.tokenFile ? { tokens } : {}),
        ...(opts.log ? { log: (l: string) => ctx.output.err(l) } : {}),
      });
      ctx.output.out(`Hetzner Cloud API emulator listening on ${running.endpoint}`);
      ctx.output.out(`  export HCLOUD_ENDPOINT=${running.endpoint}`);
      ctx.output.out(`  faults: POST ${running.adminUrl}/faults   state: GET ${running.adminUrl}/state`);
      // The listeners stay (later signals are ignored) rather than being removed on the first: execa's
      // signal-exit re-raises a signal that finds no other listener, which would kill this process
      // with its machines still up (see src/adapters/signals.ts).
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = () => {
          if (stopping) return;
          stopping = true;
          ctx.output.err("Stopping the emulator and its machines…");
          void running.close().then(resolve, resolve);
        };
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
      });
    });
};

/** The tokens in a --token-file, one a line (blank lines skipped); they stay out of argv and output. */
async function readTokenFile(path: string): Promise<string[]> {
  const text = await readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
    throw configError(
      "EMULATOR_TOKEN_FILE_UNREADABLE",
      `Cannot read the token file ${path}: ${e.code ?? e.message}.`,
      {
        hint: "Write the tokens one a line into a file only you can read, then: nixpool emulator hetzner --token-file FILE",
      },
    );
  });
  const tokens = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  if (tokens.length === 0) {
    throw configError("EMULATOR_TOKEN_FILE_EMPTY", `The token file ${path} holds no token.`, {
      hint: "Write the tokens one a line into it, or leave out --token-file to accept any token.",
    });
  }
  tokens.forEach(registerSecret);
  return tokens;
}

/** The booter that starts local pool hosts (loaded lazily: it needs root and namespaces). */
async function loadLocalBooter(dir: string, log: (line: string) => void): Promise<ServerBooter> {
  const { createLocalBooter, stopStaleHosts } = await import("../emulator/hetzner/local-booter.js");
  const stale = await stopStaleHosts(dir);
  if (stale > 0) log(`Stopped ${stale} machine(s) left by an emulator that was killed.`);
  return createLocalBooter(dir);
}
