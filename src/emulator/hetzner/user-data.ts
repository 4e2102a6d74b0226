import { parse } from "yaml";

/** What an emulated server takes from its cloud-init user_data. */
export interface BootConfig {
  /** ssh_keys.ed25519_private: the host key the server presents. */
  hostKeyPrivate: string | undefined;
  hostKeyPublic: string | undefined;
  /** root's authorized keys: users[root or default].ssh_authorized_keys and top-level ssh_authorized_keys. */
  authorizedKeys: string[];
  /** Content of a write_files entry for /etc/nix/nix.conf, if any. */
  nixConf: string | undefined;
  /** `packages` cloud-init installs at first boot (nixpool's: nix-bin, nix-setup-systemd). */
  packages: string[];
}

const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];

/**
 * Reads the parts of a #cloud-config user_data the emulator honours. Anything it cannot
 * parse yields an empty config (a real server would boot without it, too).
 */
export function parseUserData(userData: string | undefined): BootConfig {
  const empty: BootConfig = {
    hostKeyPrivate: undefined,
    hostKeyPublic: undefined,
    authorizedKeys: [],
    nixConf: undefined,
    packages: [],
  };
  if (!userData || !userData.startsWith("#cloud-config")) return empty;
  let doc: unknown;
  try {
    doc = parse(userData);
  } catch {
    return empty;
  }
  if (!doc || typeof doc !== "object") return empty;
  const d = doc as Record<string, unknown>;
  const keys = (d["ssh_keys"] ?? {}) as Record<string, unknown>;
  const authorized = strings(d["ssh_authorized_keys"]);
  for (const u of Array.isArray(d["users"]) ? (d["users"] as unknown[]) : []) {
    if (u && typeof u === "object") {
      const user = u as Record<string, unknown>;
      if (user["name"] === "root") authorized.push(...strings(user["ssh_authorized_keys"]));
    }
  }
  let nixConf: string | undefined;
  for (const f of Array.isArray(d["write_files"]) ? (d["write_files"] as unknown[]) : []) {
    if (f && typeof f === "object") {
      const file = f as Record<string, unknown>;
      if (file["path"] === "/etc/nix/nix.conf" && typeof file["content"] === "string") {
        nixConf = file["content"];
      }
    }
  }
  return {
    hostKeyPrivate: typeof keys["ed25519_private"] === "string" ? keys["ed25519_private"] : undefined,
    hostKeyPublic: typeof keys["ed25519_public"] === "string" ? keys["ed25519_public"].trim() : undefined,
    authorizedKeys: authorized.map((k) => k.trim()).filter((k) => k !== ""),
    nixConf,
    packages: strings(d["packages"]),
  };
}
