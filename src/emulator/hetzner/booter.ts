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
}

/** A running emulated machine. */
export interface BootedHost {
  address: string;
  /** Cuts or restores the machine's network (a booting or broken machine is unreachable). */
  setReachable(up: boolean): Promise<void>;
  stop(): Promise<void>;
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
