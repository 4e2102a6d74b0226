const DIGITS = /(\d+)/;

/**
 * Compares two strings so that runs of digits compare as numbers ("leaf-2" before "leaf-10");
 * the rest compares by code unit, so the order is the same on every machine.
 */
export function compareNatural(a: string, b: string): number {
  const pa = a.split(DIGITS);
  const pb = b.split(DIGITS);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i] ?? "";
    const y = pb[i] ?? "";
    if (x === y) continue;
    // split() with a capture group puts digit runs at odd indexes.
    if (i % 2 === 1) {
      const nx = BigInt(x);
      const ny = BigInt(y);
      if (nx !== ny) return nx < ny ? -1 : 1;
      // Same value, different zero padding: fewer leading zeros first.
      return x.length - y.length;
    }
    return x < y ? -1 : 1;
  }
  return pa.length - pb.length || (a < b ? -1 : a > b ? 1 : 0);
}
