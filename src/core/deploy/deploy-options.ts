import { readDurationFlag } from "../duration.js";
import { ExitCode, NixpoolError } from "../errors.js";

/** What switch-to-configuration is asked to do (NixOS's contract). */
export const ACTIONS = ["switch", "boot", "test", "dry-activate"] as const;
export type Action = (typeof ACTIONS)[number];

/** NixOS's activation program, inside the system. */
export const SWITCH_PROGRAM = "bin/switch-to-configuration";

/** Where the system is built: a builder's name, the best capable builders (auto), or this machine. */
export type BuildHost = { kind: "auto" } | { kind: "local" } | { kind: "builder"; name: string };

const usage = (message: string, hint: string) =>
  new NixpoolError("USAGE", message, { hint, exitCode: ExitCode.usage });

/** Reads --action; switch when absent. */
export function parseAction(v: string | undefined): Action {
  if (v === undefined) return "switch";
  if ((ACTIONS as readonly string[]).includes(v)) return v as Action;
  throw usage(
    `--action must be one of ${ACTIONS.join(", ")} (got "${v}").`,
    "For example: nixpool deploy system.nix --target web --action test",
  );
}

/** Reads --build-host: auto (default), local, or a builder's name. */
export function parseBuildHost(v: string | undefined): BuildHost {
  if (v === undefined || v === "auto") return { kind: "auto" };
  if (v === "local") return { kind: "local" };
  if (/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(v)) return { kind: "builder", name: v };
  throw usage(
    `--build-host must be a builder's name, auto or local (got "${v}").`,
    "List the builders with: nixpool builders",
  );
}

/** Reads --confirm-timeout (a bare number is seconds); 30 s when absent; between 1 s and 1 h. */
export function parseConfirmTimeout(v: string | undefined): number {
  if (v === undefined) return 30_000;
  return readDurationFlag(v, {
    flag: "--confirm-timeout",
    bare: "seconds",
    minMs: 1000,
    maxMs: 3_600_000,
    example: "nixpool deploy system.nix --target web --confirm-timeout 60s",
  }).ms;
}

/**
 * Reads --activate: the program run instead of bin/switch-to-configuration, with the action as
 * its argument; a relative path is inside the system (bin/activate), an absolute one is on the
 * target. One program, no arguments, plain path characters.
 */
export function parseActivateProgram(v: string | undefined): string {
  if (v === undefined) return SWITCH_PROGRAM;
  const ok = /^\/?(?:[A-Za-z0-9_.+-]+\/)*[A-Za-z0-9_.+-]+$/.test(v) && !v.split("/").includes("..");
  if (!ok)
    throw usage(
      `--activate must name one program by its path, inside the system (bin/activate) or absolute (got "${v}").`,
      "For example: nixpool deploy app.nix --target web --activate bin/activate",
    );
  return v;
}

/** Reads --parallel: how many targets are deployed at once (default 4, 1–64). */
export function parseParallel(v: string | undefined): number {
  if (v === undefined) return 4;
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || n < 1 || n > 64)
    throw usage(
      `--parallel must be a whole number from 1 to 64 (got "${v}").`,
      "For example: nixpool deploy system.nix --target a --target b --parallel 2",
    );
  return n;
}
