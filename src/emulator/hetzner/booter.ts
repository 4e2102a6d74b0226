/** What the emulator asks of a booter: start a builder host for a server. */
export interface BootRequest {
  serverId: number;
  name: string;
  cores: number;
  /** The server's user_data as sent; the fields below are what the emulator takes from it. */
  userData: string | undefined;
  hostKeyPrivate: string | undefined;
  authorizedKeys: string[];
  nixConf: string | undefined;
  /** The disk to start from: a snapshot's copy (created from a snapshot image), else a fresh one. */
  disk?: DiskCopy;
}

/** A machine's disk as a booter copied it for a snapshot. */
export interface DiskCopy {
  /** Bytes the copy takes (image_size). */
  bytes: number;
  /** Where the booter keeps it (opaque to the emulator). */
  path: string;
  /** Deletes the copy (the image was deleted). */
  remove(): Promise<void>;
}

/** A running emulated machine. */
export interface BootedHost {
  address: string;
  /** Cuts or restores the machine's network (a booting or broken machine is unreachable). */
  setReachable(up: boolean): Promise<void>;
  stop(): Promise<void>;
  /**
   * Hides (false) or restores (true) the machine's Nix, as on a server whose cloud-init is still
   * installing nix-bin: SSH answers, Nix does not. Absent: the booter cannot hide it.
   */
  setNixInstalled?(installed: boolean): Promise<void>;
  /** Copies the machine's disk for a snapshot image; absent: the booter keeps no disks. */
  snapshot?(imageId: number): Promise<DiskCopy>;
}

/** Starts a machine for a server; the default booter starts nothing and hands out TEST-NET addresses. */
export type ServerBooter = (req: BootRequest) => Promise<BootedHost>;

/** A fake booter: no machine, a documentation address (203.0.113.0/24). */
export const noBooter: ServerBooter = (req) =>
  Promise.resolve({
    address: `203.0.113.${(req.serverId % 250) + 1}`,
    setReachable: () => Promise.resolve(),
    stop: () => Promise.resolve(),
  });
