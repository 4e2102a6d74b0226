// Which system each deploy target gets: one Nix file's system for every target, or, with a
// flake, the NixOS configuration named after the host (`.#web`, as nixos-rebuild --flake does)
// or after each target (`nixpool deploy . --target a --target b`).
import { ExitCode, NixpoolError } from "../errors.js";
import type { FlakeInstallable, Installable } from "../installable.js";

/** One system to build and the targets it goes to. */
export interface DeployAssignment {
  system: Installable;
  /** The NixOS configuration's name, when a flake's configuration was chosen by name. */
  configuration?: string;
  targets: string[];
}

/** `nixosConfigurations.NAME.config.system.build.toplevel` of a flake, as nixos-rebuild builds it. */
export function nixosToplevel(i: FlakeInstallable, name: string): FlakeInstallable {
  const quoted = /^[a-zA-Z_][a-zA-Z0-9_'-]*$/.test(name) ? name : JSON.stringify(name);
  return {
    ...i,
    fragment: `nixosConfigurations.${quoted}.config.system.build.toplevel`,
    shown: `${i.shown.split("#")[0] ?? i.shown}#${name}`,
  };
}

/** A fragment that is a host name (no dots): a NixOS configuration, as `nixos-rebuild --flake .#host`. */
export function isHostFragment(fragment: string): boolean {
  return fragment !== "" && !fragment.includes(".") && !fragment.includes('"');
}

/**
 * The systems to build and where each goes. `names` are the flake's NixOS configurations (asked
 * only for a flake): a configuration chosen by name that is not among them is DEPLOY_CONFIG_UNKNOWN,
 * naming the ones there are.
 */
export function planDeploySystems(
  i: Installable,
  targets: readonly string[],
  names: readonly string[] | undefined,
): DeployAssignment[] {
  const needTargets = (example: string) => {
    if (targets.length > 0) return;
    throw new NixpoolError("USAGE", "nixpool deploy needs at least one --target here.", {
      hint: `For example: ${example}`,
      exitCode: ExitCode.usage,
    });
  };
  if (i.kind === "file") {
    needTargets(`nixpool deploy ${i.shown} --target web`);
    return [{ system: i, targets: [...targets] }];
  }
  if (i.fragment !== "" && !isHostFragment(i.fragment)) {
    needTargets(`nixpool deploy ${i.shown} --target web`);
    return [{ system: i, targets: [...targets] }];
  }
  const check = (name: string) => {
    if (names === undefined || names.includes(name)) return;
    throw new NixpoolError(
      "DEPLOY_CONFIG_UNKNOWN",
      names.length
        ? `The flake ${i.ref} has no NixOS configuration ${name}; it has ${names.join(", ")}.`
        : `The flake ${i.ref} has no NixOS configurations (nixosConfigurations is missing or empty).`,
      {
        hint: names.length
          ? `Deploy one of them, e.g.: nixpool deploy ${i.shown.split("#")[0] ?? "."}#${names[0] ?? ""} --target ${name}`
          : "Add nixosConfigurations.HOST to flake.nix, or name an attribute: nixpool deploy .#ATTR.PATH --target HOST",
        exitCode: ExitCode.usage,
      },
    );
  };
  if (i.fragment !== "") {
    check(i.fragment);
    return [
      {
        system: nixosToplevel(i, i.fragment),
        configuration: i.fragment,
        targets: targets.length ? [...targets] : [i.fragment],
      },
    ];
  }
  needTargets(
    `nixpool deploy ${i.shown} --target web --target db (each gets its own nixosConfigurations.NAME)`,
  );
  return targets.map((t) => {
    check(t);
    return { system: nixosToplevel(i, t), configuration: t, targets: [t] };
  });
}
