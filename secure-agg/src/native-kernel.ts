// The native mask kernel (native/mask_kernel.c, compiled by `npm run setup` into
// build/mask_kernel.node): AES-128-CTR keystream generated in registers with the CPU's AES
// instructions (VAES + AVX-512 where present, else AES-NI) and added straight into the target,
// with no keystream buffer. It produces the same bits as the node:crypto path in masking.ts, which
// stays the reference and the fallback: where the addon was not built (no C compiler or no
// Node-API headers at setup), cannot load, or the CPU has no AES instructions, `nativeKernel()` is
// undefined and masking uses node:crypto with the WebAssembly SIMD add.
//
// TENSORGUARD_MASK_KERNEL=js turns the native kernel off (benchmarks and tests compare the paths).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addon's exports. Vectors are typed arrays (any element type); lengths are checked there. */
export interface NativeKernel {
  /** target = source + Σ_i signs[i] · AES-128-CTR(keys[16i .. 16i+16]) as k-bit words. */
  addMasks(
    target: ArrayBufferView,
    source: ArrayBufferView,
    keys: Uint8Array,
    signs: Int8Array,
    bits: number,
  ): void;
  /**
   * Randomized rounding into Z_2^k: out[i] = ⌊v⌋ + (coin_i < frac(v)·2^32) + noise[i], v =
   * values[i]·scale, coin_i the i-th little-endian 32-bit word of AES-128-CTR(key).
   */
  encode(
    values: Float32Array | Float64Array,
    noise: Float64Array | null,
    scale: number,
    out: ArrayBufferView,
    bits: number,
    key: Uint8Array,
  ): void;
  /** Σ x² in double precision. */
  sumSquares(values: Float32Array | Float64Array): number;
  /** target ±= other as k-bit words. */
  addVectors(target: ArrayBufferView, other: ArrayBufferView, sign: number, bits: number): void;
  /** The instruction set in use: 'vaes', 'aesni', or 'none' (then the kernel is not offered). */
  path(): 'vaes' | 'aesni' | 'none';
  /** Tests only: 'aesni' forces the AES-NI path on a VAES machine, 'auto' restores the best. */
  forcePath(name: 'aesni' | 'auto'): 'vaes' | 'aesni' | 'none';
}

/** Where setup puts the compiled addon (secure-agg/build, from src/ or dist/ alike). */
export const NATIVE_KERNEL_FILE = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  'build',
  'mask_kernel.node',
);

let cached: NativeKernel | undefined | null = null;

/** The native kernel, or undefined where it is not built, not loadable, disabled, or unsupported. */
export function nativeKernel(): NativeKernel | undefined {
  if (cached !== null) return cached;
  cached = undefined;
  if ((process.env.TENSORGUARD_MASK_KERNEL ?? '').toLowerCase() === 'js') return cached;
  try {
    const k = createRequire(import.meta.url)(NATIVE_KERNEL_FILE) as NativeKernel;
    if (k.path() !== 'none') cached = k;
  } catch {
    // Not built or not loadable here: masking.ts falls back to node:crypto + WebAssembly.
  }
  return cached;
}
