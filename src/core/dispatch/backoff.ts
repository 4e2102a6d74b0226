/**
 * How long a failing builder is left alone: Hydra's rule, base × 3^(n−1) for its n-th failure in
 * a row, n capped at 4 (60 s, 3 min, 9 min, 27 min with the default base of 60 s).
 */
export function builderBackoffMs(failuresInARow: number, baseMs = 60_000): number {
  const n = Math.min(Math.max(failuresInARow, 1), 4);
  return baseMs * 3 ** (n - 1);
}
