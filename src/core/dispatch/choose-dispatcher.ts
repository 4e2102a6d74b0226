import { configError } from "../errors.js";

export type DispatcherKind = "nixpool" | "hook";

/** Which dispatcher runs a build, and why (shown in the report and in --json). */
export interface DispatcherChoice {
  kind: DispatcherKind;
  reason: string;
}

/**
 * nixpool's own dispatcher by default. It imports results into the local store itself, so where a
 * Nix daemon owns the store and this user is not root, Nix's build hook (set up by
 * `nixpool config apply`) builds instead — unless the user insisted on the dispatcher.
 */
export function chooseDispatcher(
  flag: string | undefined,
  daemonOwnsStore: boolean,
  uid: number,
): DispatcherChoice {
  if (flag !== undefined && flag !== "nixpool" && flag !== "hook") {
    throw configError("USAGE", `--dispatcher must be "nixpool" or "hook" (got "${flag}").`, {
      hint: "For example: nixpool build FILE.nix --dispatcher hook",
    });
  }
  if (flag === "hook") return { kind: "hook", reason: "--dispatcher hook: Nix's own build hook" };
  if (daemonOwnsStore && uid !== 0) {
    if (flag === "nixpool") {
      throw configError(
        "DISPATCHER_NEEDS_STORE",
        "nixpool's dispatcher must import build results into the Nix store, which a Nix daemon owns here and this user cannot write.",
        {
          hint: "Run the build as root, or let Nix's build hook do it: sudo nixpool config apply; nixpool build FILE.nix --dispatcher hook",
        },
      );
    }
    return {
      kind: "hook",
      reason:
        "a Nix daemon owns the store and this user cannot import results, so Nix's build hook builds (set up by nixpool config apply)",
    };
  }
  return {
    kind: "nixpool",
    reason: flag === "nixpool" ? "--dispatcher nixpool" : "the default",
  };
}
