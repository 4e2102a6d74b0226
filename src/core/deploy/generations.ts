import { NixpoolError } from "../errors.js";

/** One generation of a target's profile. */
export interface Generation {
  number: number;
  /** The system (store path) it points to. */
  path: string;
  /** When it was made, in seconds since the epoch (the link's mtime). */
  createdAt: number;
  current: boolean;
}

const STORE_PATH = /^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[^/\s]+$/;

/**
 * Reads what GENERATIONS_SCRIPT printed: `N<TAB>PATH<TAB>MTIME` lines, then `current<TAB>LINK`
 * (LINK is `PROFILE-N-link`, or empty for a profile that does not exist yet). Sorted by number.
 */
export function parseGenerations(text: string, target: string, profile: string): Generation[] {
  const bad = (line: string) =>
    new NixpoolError(
      "DEPLOY_TARGET_ANSWER_INVALID",
      `Target ${target} listed the generations of ${profile} in a form nixpool does not understand ("${line.slice(0, 80)}").`,
      { hint: `Look at the profile by hand: ls -l ${profile}*`, details: { target, profile } },
    );
  const gens: Generation[] = [];
  let currentLink: string | undefined;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const fields = line.split("\t");
    if (fields[0] === "current" && fields.length === 2) {
      currentLink = fields[1] ?? "";
      continue;
    }
    const [n = "", path = "", mtime = ""] = fields;
    if (
      fields.length !== 3 ||
      !/^[1-9][0-9]{0,8}$/.test(n) ||
      !STORE_PATH.test(path) ||
      !/^[0-9]{1,12}$/.test(mtime)
    )
      throw bad(line);
    gens.push({ number: Number(n), path, createdAt: Number(mtime), current: false });
  }
  if (currentLink === undefined) throw bad(text.split("\n").at(-2) ?? "");
  const m = /-([0-9]+)-link$/.exec(currentLink);
  const current = m ? Number(m[1]) : undefined;
  if (currentLink !== "" && current === undefined) throw bad(`current\t${currentLink}`);
  return gens.map((g) => ({ ...g, current: g.number === current })).sort((a, b) => a.number - b.number);
}

/** The current generation, if the profile has one. */
export function currentGeneration(gens: readonly Generation[]): Generation | undefined {
  return gens.find((g) => g.current);
}

/** The generation `--rollback` returns to: the newest one older than the current (nix-env --rollback's rule). */
export function rollbackGeneration(gens: readonly Generation[]): Generation | undefined {
  const cur = currentGeneration(gens);
  if (!cur) return undefined;
  return gens.filter((g) => g.number < cur.number).at(-1);
}

/**
 * The generation `nix-env -p PROFILE --set PATH` leaves current: Nix 2.8 makes a new one (the
 * newest number + 1) unless the newest already points to PATH (profiles.cc, createGeneration).
 */
export function generationAfterSet(gens: readonly Generation[], path: string): number {
  const newest = gens.at(-1);
  if (newest && newest.path === path) return newest.number;
  return (newest?.number ?? 0) + 1;
}
