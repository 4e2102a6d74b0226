import { Option } from "commander";

/** --protocol: the Nix protocol a key or certificate is forced into (`nixpool access` and `nixpool ca`). */
export const protocolOption = () =>
  new Option("--protocol <protocol>", "Nix protocol a key is forced into")
    .choices(["ssh-ng", "ssh"])
    .default("ssh-ng");
/** --users FILE (`nixpool access` and `nixpool ca`). */
export const usersOption = () => new Option("--users <file>", "users file (default STATE/users.toml)");
