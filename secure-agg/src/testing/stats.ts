// Statistical helpers shared by tests.

/** Pearson chi-square statistic of byte frequencies against uniform (255 degrees of freedom). */
export function chiSquareBytes(bytes: Uint8Array): number {
  const counts = new Float64Array(256);
  for (const b of bytes) counts[b]!++;
  const e = bytes.length / 256;
  let x = 0;
  for (const c of counts) x += ((c - e) * (c - e)) / e;
  return x;
}
/** χ²(255) exceeds this with probability about 1e-6 (Wilson–Hilferty: 255·(1 - 2/2295 + 4.753·√(2/2295))³). */
export const CHI2_255_P1E6 = 377;
