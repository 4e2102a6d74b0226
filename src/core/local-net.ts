/** Slots of the local pool: each owns a /30 of 10.251.0.0/16, so 16384 slots. */
export const MAX_SLOTS = 16384;

/** The network every slot's /30 is cut from: hosts route it through this machine to reach each other. */
export const POOL_NETWORK = "10.251.0.0/16";

/** The network namespace of a slot. */
export function netnsName(slot: number): string {
  return `nixpool-${slot}`;
}

/** Interface names of a slot's veth pair (≤ 15 characters, the kernel's limit). */
export function vethNames(slot: number): { host: string; builder: string } {
  return { host: `np${slot}h`, builder: `np${slot}b` };
}

/** The /30 of a slot: this machine's side (.1) and the builder's (.2). */
export function hostAddresses(slot: number): { hostAddress: string; address: string } {
  if (!Number.isInteger(slot) || slot < 0 || slot >= MAX_SLOTS)
    throw new RangeError(`slot ${slot} out of range`);
  const base = slot * 4;
  const third = Math.floor(base / 256);
  const fourth = base % 256;
  return { hostAddress: `10.251.${third}.${fourth + 1}`, address: `10.251.${third}.${fourth + 2}` };
}
