/** Store paths as Nix 2.8 prints them: `/nix/store/<32 chars of Nix's base32>-<name>`. */

export const STORE_DIR = "/nix/store";

/** The longest store path Nix makes: the store dir, "/", 32 hash characters, "-", a name of at most 211. */
export const STORE_PATH_MAX_BYTES = STORE_DIR.length + 1 + 32 + 1 + 211;

// Nix's base32 alphabet omits e, o, u and t.
const STORE_PATH =
  /^\/nix\/store\/([0-9abcdfghijklmnpqrsvwxyz]{32})-([A-Za-z0-9+\-_?=][A-Za-z0-9+\-._?=]{0,210})$/;

/** Whether `s` is a syntactically valid store path (it may or may not exist). */
export function isStorePath(s: string): boolean {
  return STORE_PATH.test(s);
}

/** Whether `s` is a store path ending in `.drv`. */
export function isDerivationPath(s: string): boolean {
  return s.endsWith(".drv") && STORE_PATH.test(s);
}

/** "hello-2.12" from "/nix/store/<hash>-hello-2.12"; undefined for a non-store path. */
export function storePathName(s: string): string | undefined {
  return STORE_PATH.exec(s)?.[2];
}
