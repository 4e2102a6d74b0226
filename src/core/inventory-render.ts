import { stringify } from "smol-toml";
import { BUILDER_NAME_PATTERN, type Builder, type Protocol, type Trust } from "./builder.js";

/** One `[builders.NAME]` table of nixpool.toml; absent fields take the inventory's defaults. */
export interface InventoryBuilderEntry {
  host: string;
  port?: number;
  user?: string;
  protocol?: Protocol;
  systems?: string[];
  maxJobs?: number;
  speedFactor?: number;
  supportedFeatures?: string[];
  mandatoryFeatures?: string[];
  hostKey?: string;
  identityFile?: string;
  tags?: string[];
  trust?: Trust;
}

export interface NamedInventoryEntry {
  name: string;
  entry: InventoryBuilderEntry;
  /** Comment lines written above the table (without "# "). */
  comments?: string[];
}

/** The same builder as an inventory entry, leaving out every field that equals its default. */
export function toInventoryEntry(b: Builder, defaultSystem?: string): InventoryBuilderEntry {
  const e: InventoryBuilderEntry = { host: b.host };
  if (b.port !== 22) e.port = b.port;
  if (b.user !== undefined) e.user = b.user;
  // Written even when it is the default, so a reader sees which protocol Nix speaks.
  e.protocol = b.protocol;
  if (!(b.systems.length === 1 && b.systems[0] === defaultSystem)) e.systems = [...b.systems];
  if (b.maxJobs !== 1) e.maxJobs = b.maxJobs;
  if (b.speedFactor !== 1) e.speedFactor = b.speedFactor;
  if (b.supportedFeatures.length) e.supportedFeatures = [...b.supportedFeatures];
  if (b.mandatoryFeatures.length) e.mandatoryFeatures = [...b.mandatoryFeatures];
  if (b.hostKey !== undefined) e.hostKey = b.hostKey;
  if (b.identityFile !== undefined) e.identityFile = b.identityFile;
  if (b.tags.length) e.tags = [...b.tags];
  if (b.trust !== "trusted") e.trust = b.trust;
  return e;
}

// Field order in the written file: identity first, then Nix's columns, then nixpool's own.
const FIELD_ORDER: (keyof InventoryBuilderEntry)[] = [
  "host",
  "port",
  "user",
  "protocol",
  "systems",
  "maxJobs",
  "speedFactor",
  "supportedFeatures",
  "mandatoryFeatures",
  "identityFile",
  "hostKey",
  "tags",
  "trust",
];

/** A TOML key for a builder name: bare when it can be, quoted otherwise (names may hold dots). */
function tableKey(name: string): string {
  return /^[A-Za-z0-9_-]+$/.test(name) ? name : JSON.stringify(name);
}

/** One `[builders.NAME]` table as TOML text, with optional comment lines above it. */
export function renderBuilderTable(n: NamedInventoryEntry): string {
  if (!BUILDER_NAME_PATTERN.test(n.name)) throw new Error(`invalid builder name ${JSON.stringify(n.name)}`);
  const ordered: Record<string, unknown> = {};
  for (const k of FIELD_ORDER) {
    const v = n.entry[k];
    if (v !== undefined) ordered[k] = v;
  }
  const comments = (n.comments ?? []).map((c) => `# ${c.replace(/[\r\n]+/g, " ")}\n`).join("");
  return `${comments}[builders.${tableKey(n.name)}]\n${stringify(ordered).replace(/\n*$/, "\n")}`;
}

/** A whole nixpool.toml: an optional header comment, then one table per builder. */
export function renderInventoryToml(entries: readonly NamedInventoryEntry[], header: string[] = []): string {
  const head = header.map((h) => `# ${h.replace(/[\r\n]+/g, " ")}\n`).join("");
  const tables = entries.map(renderBuilderTable).join("\n");
  return `${head}${head && tables ? "\n" : ""}${tables}`;
}
