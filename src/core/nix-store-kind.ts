/**
 * Which store Nix 2.8 opens, and so whether a Nix daemon (not the calling process) performs the
 * builds: then the build hook runs as root with root's ssh setup and ignores --builders from
 * untrusted users. The one rule `build` and `doctor` share, read from Nix's source at tag 2.8.0:
 * the `store` setting defaults to NIX_REMOTE, else "auto" (libstore/globals.hh), and "auto" opens
 * the local store when the state directory is readable and writable, else the daemon when its
 * socket exists, else the local store (openFromNonUri in libstore/store-api.cc).
 */

export type StoreKind = "daemon" | "local" | "other";

/** What decides the store: settings and environment, plus what was probed on the machine. */
export interface StoreFacts {
  /** The `store` setting as `nix show-config` reports it; "" or absent when unknown. */
  storeSetting?: string | undefined;
  /** NIX_REMOTE of the environment Nix runs in. */
  nixRemote?: string | undefined;
  /** access(stateDir, R_OK | W_OK) succeeds for the user running Nix (see storeProbePaths). */
  stateWritable: boolean;
  /** The daemon socket exists (see storeProbePaths). */
  daemonSocket: boolean;
}

/** The store URI Nix uses: the `store` setting, which defaults to NIX_REMOTE, else "auto". */
export function effectiveStoreUri(f: Pick<StoreFacts, "storeSetting" | "nixRemote">): string {
  return f.storeSetting || f.nixRemote || "auto";
}

function splitParams(store: string): { uri: string; params: URLSearchParams } {
  const q = store.indexOf("?");
  return q < 0
    ? { uri: store, params: new URLSearchParams() }
    : { uri: store.slice(0, q), params: new URLSearchParams(store.slice(q + 1)) };
}

/** The paths Nix probes to resolve "auto": its state directory and the daemon socket. */
export function storeProbePaths(
  store: string,
  env: Record<string, string | undefined>,
): { stateDir: string; daemonSocket: string } {
  const nixStateDir = env["NIX_STATE_DIR"] || "/nix/var/nix";
  return {
    stateDir: splitParams(store).params.get("state") || nixStateDir,
    daemonSocket: env["NIX_DAEMON_SOCKET_PATH"] || `${nixStateDir}/daemon-socket/socket`,
  };
}

/** Which kind of store a store URI opens, given what was probed (Nix 2.8's openStore). */
export function resolveStoreKind(
  store: string,
  probe: Pick<StoreFacts, "stateWritable" | "daemonSocket">,
): StoreKind {
  const { uri } = splitParams(store);
  if (uri === "" || uri === "auto") return probe.stateWritable || !probe.daemonSocket ? "local" : "daemon";
  if (uri === "daemon" || uri.startsWith("unix://")) return "daemon";
  // A scheme-less path ("/some/root") is a local store with that root.
  if (uri === "local" || (!uri.includes("://") && uri.includes("/"))) return "local";
  return "other";
}

/** Whether a Nix daemon performs this user's builds. */
export function isDaemonBuilding(f: StoreFacts): boolean {
  return resolveStoreKind(effectiveStoreUri(f), f) === "daemon";
}
