import type { BootedHost } from "./booter.js";
import type { Fault } from "./faults.js";
import { parseUserData } from "./user-data.js";
import {
  finishAction,
  newAction,
  takeFault,
  type ActionRecord,
  type Emulator,
  type ServerRecord,
} from "./state.js";

type BootFault = Extract<Fault, { kind: "boot" }>;

/** Duration of the server's create_server action: longer from a snapshot when the timing says so. */
export function createMsFor(emu: Emulator, s: ServerRecord): number {
  return s.image.type === "system" ? emu.timing.createMs : emu.timing.snapshotCreateMs;
}

/**
 * The packages cloud-init installs once the machine answers: the user_data's `packages` on a
 * server from a system image, when installing takes time (`provisionMs`); none from a snapshot,
 * whose disk has them.
 */
export function packagesToInstall(emu: Emulator, s: ServerRecord): string[] {
  if (emu.timing.provisionMs <= 0 || s.image.type !== "system") return [];
  return parseUserData(s.userData).packages;
}

/** Starts the server's machine, unreachable until scheduleBoot says it booted; returns the boot fault it takes, if any. */
export async function bootServer(emu: Emulator, s: ServerRecord): Promise<BootFault | undefined> {
  const cfg = parseUserData(s.userData);
  const fault = takeFault(emu.state, "boot");
  const host = await emu.booter({
    serverId: s.id,
    name: s.name,
    cores: s.type.cores,
    userData: s.userData,
    hostKeyPrivate: cfg.hostKeyPrivate,
    authorizedKeys: [...s.sshKeys, ...cfg.authorizedKeys],
    nixConf: cfg.nixConf,
    ...(s.image.disk ? { disk: s.image.disk } : {}),
  });
  s.host = host;
  s.ipv4 = host.address;
  await host.setReachable(false);
  // Nix is not there before cloud-init has installed it.
  if (packagesToInstall(emu, s).includes("nix-bin")) await host.setNixInstalled?.(false);
  return fault;
}

/**
 * Plays the server's creation: `starting` halfway through create_server (createMsFor), `running`
 * at its end, then reachable after the boot time (a boot fault fails, slows or never finishes the
 * boot), then, from a system image whose user_data lists packages, `provisionMs` of cloud-init
 * installing them (Nix absent until it ends).
 */
export function scheduleBoot(
  emu: Emulator,
  s: ServerRecord,
  action: ActionRecord,
  fault: BootFault | undefined,
) {
  const { timing } = emu;
  const createMs = createMsFor(emu, s);
  const packages = packagesToInstall(emu, s);
  /** cloud-init's package installation, once the machine answers; then it is booted. */
  const provision = (host: BootedHost, booted: ServerRecord["boot"]) => {
    if (packages.length === 0) {
      s.boot = booted;
      return;
    }
    s.boot = "provisioning";
    s.timers.push(
      setTimeout(() => {
        if (s.host !== host) return;
        emu.track(
          (packages.includes("nix-bin")
            ? (host.setNixInstalled?.(true) ?? Promise.resolve())
            : Promise.resolve()
          ).then(() => {
            s.boot = booted;
          }),
        );
      }, timing.provisionMs),
    );
  };
  s.timers.push(
    setTimeout(() => {
      if (fault?.mode === "fail") {
        finishAction(emu, action, { code: "server_create_failed", message: "Server creation failed" });
        s.status = "off";
        s.boot = "failed";
        return;
      }
      finishAction(emu, action);
      s.status = "running";
      if (fault?.mode === "unreachable") {
        s.boot = "unreachable";
        return;
      }
      const bootMs = fault?.mode === "slow" ? fault.delayMs : timing.bootMs;
      s.timers.push(
        setTimeout(() => {
          if (s.status !== "running" || !s.host) return;
          const host = s.host;
          emu.track(
            host.setReachable(true).then(() => provision(host, fault?.mode === "slow" ? "slow" : "booted")),
          );
        }, bootMs),
      );
    }, createMs),
  );
  s.timers.push(
    setTimeout(() => {
      if (s.status === "initializing") s.status = "starting";
    }, createMs / 2),
  );
}

/** Starts deleting a server: its machine stops, and it is gone when the delete_server action ends. */
export function deleteServer(emu: Emulator, s: ServerRecord): ActionRecord {
  const { timing, state } = emu;
  for (const t of s.timers) clearTimeout(t);
  s.timers = [];
  s.status = "deleting";
  const action = newAction(emu, "delete_server", [{ id: s.id, type: "server" }], timing.deleteMs);
  const host = s.host;
  s.host = undefined;
  const stopped = host ? host.stop() : Promise.resolve();
  const done = Promise.all([stopped, new Promise((r) => setTimeout(r, timing.deleteMs))]).then(
    () => {
      state.servers.delete(s.id);
      s.boot = "stopped";
      finishAction(emu, action);
    },
    (e: unknown) => {
      finishAction(emu, action, {
        code: "server_error",
        message: `stopping the machine failed: ${String(e)}`,
      });
    },
  );
  emu.track(done);
  return action;
}

/** Stops every server's timers and machine, and waits for background work. */
export async function stopAllServers(emu: Emulator): Promise<void> {
  const hosts: BootedHost[] = [];
  for (const s of emu.state.servers.values()) {
    for (const t of s.timers) clearTimeout(t);
    if (s.host) hosts.push(s.host);
    s.host = undefined;
  }
  for (const i of emu.state.images.values()) for (const t of i.timers) clearTimeout(t);
  await Promise.allSettled([...hosts.map((h) => h.stop()), ...emu.pending]);
}
