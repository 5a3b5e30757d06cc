// Vectors in the ring Z_2^k (k = 32 or 64) and the masks added to them. A mask is the AES-128-CTR
// keystream under a key derived from a 32-byte seed (HKDF, bound to the round), read as
// little-endian k-bit words: a PRG whose output is indistinguishable from uniform as long as the
// seed is secret. Three paths compute the same bits:
// - 'native' (the default where setup built it): native/mask_kernel.c encrypts the counter blocks
//   in registers with the CPU's AES instructions and adds them straight into the target;
// - 'simd': node:crypto (OpenSSL, AES-NI) encrypts a zero buffer in 32 KiB chunks and a
//   WebAssembly SIMD kernel (ring-kernel.ts) adds each chunk into the target;
// - 'scalar': node:crypto and a plain JavaScript loop, the reference.
//
// Why 32 KiB chunks on the node:crypto paths: node:crypto allocates a fresh output buffer on every
// `update`; at 256 KiB those come from mmap and page-fault in (system time was up to half the CPU
// time in some profiles), while 32 KiB reuses malloc'd memory and keeps keystream, target chunk
// and kernel memory in L2.
import { createCipheriv } from 'node:crypto';
import { MalformedMessageError } from './errors.js';
import { deriveKey, type RoundContext } from './keys.js';
import { nativeKernel } from './native-kernel.js';
import { KERNEL_CHUNK_BYTES, KERNEL_STEP_BYTES, ringKernel } from './ring-kernel.js';

/** Ring width k in bits. */
export type RingBits = 32 | 64;
/** A vector in Z_2^k: Uint32Array for k = 32, BigUint64Array for k = 64 (unsigned residues). */
export type RingVector = Uint32Array | BigUint64Array;
/** The centred (two's-complement) reading of a ring vector: the exact integer when no overflow. */
export type SignedVector = Int32Array | BigInt64Array;

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  // The 64-bit arithmetic below reads BigUint64Array words as (lo, hi) Uint32 pairs.
  throw new Error('secure-agg needs a little-endian platform');
}

/**
 * How masks are expanded and ring additions run: the native AES kernel, node:crypto with the
 * WebAssembly SIMD add, or node:crypto with the scalar reference loop.
 */
export type RingAddPath = 'native' | 'simd' | 'scalar';

const KERNEL = ringKernel();
const NATIVE = nativeKernel();
/** The path used unless a caller asks otherwise: the fastest one this process has. */
export const DEFAULT_RING_ADD_PATH: RingAddPath = NATIVE ? 'native' : KERNEL ? 'simd' : 'scalar';
/** The paths this process can run (tests and benchmarks compare them). */
export const RING_ADD_PATHS: readonly RingAddPath[] = [
  ...(NATIVE ? (['native'] as const) : []),
  ...(KERNEL ? (['simd'] as const) : []),
  'scalar',
];

const CHUNK_BYTES = KERNEL_CHUNK_BYTES;
const ZERO = new Uint8Array(CHUNK_BYTES);
const ZERO_IV = Buffer.alloc(16);

export function ringBitsOf(v: RingVector): RingBits {
  return v instanceof Uint32Array ? 32 : 64;
}

export function allocRing(bits: RingBits, length: number): RingVector {
  return bits === 32 ? new Uint32Array(length) : new BigUint64Array(length);
}

/**
 * A ring vector whose memory is not zeroed (Buffer.allocUnsafeSlow: its own ArrayBuffer, never
 * the shared pool), for a caller that writes every element before anything reads it: an encoder's
 * output, a masked copy of an input, bytes copied in. Saves a pass over 4 MB per 10^6 elements.
 */
export function allocRingForOverwrite(bits: RingBits, length: number): RingVector {
  const buf = Buffer.allocUnsafeSlow((length * bits) / 8).buffer;
  return bits === 32 ? new Uint32Array(buf, 0, length) : new BigUint64Array(buf, 0, length);
}

/** The vector's storage as 32-bit words (two per element for k = 64, low word first). */
export function words32(v: RingVector): Uint32Array {
  return new Uint32Array(v.buffer, v.byteOffset, v.byteLength / 4);
}

/** Little-endian bytes of a ring vector (a view, no copy). */
export function ringToBytes(v: RingVector): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * A ring vector from little-endian bytes (copied, so alignment never matters). Throws
 * MalformedMessageError unless `bytes` holds exactly `length` words of `bits` bits.
 */
export function ringFromBytes(bytes: Uint8Array, bits: RingBits, length: number): RingVector {
  const expected = (length * bits) / 8;
  if (bytes.length !== expected) {
    throw new MalformedMessageError(
      `a vector of ${length} ${bits}-bit words is ${expected} bytes, got ${bytes.length}`,
    );
  }
  const out = allocRingForOverwrite(bits, length);
  new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes);
  return out;
}

/** Centred reading: the same bytes as Int32Array / BigInt64Array (no copy). */
export function toSigned(v: RingVector): SignedVector {
  return v instanceof Uint32Array
    ? new Int32Array(v.buffer, v.byteOffset, v.length)
    : new BigInt64Array(v.buffer, v.byteOffset, v.length);
}

/**
 * target += sign · other, element-wise in Z_2^k. Both must have the same width and length
 * (MalformedMessageError otherwise). `path` is for tests and benchmarks.
 */
export function addInto(
  target: RingVector,
  other: RingVector,
  sign: 1 | -1 = 1,
  path: RingAddPath = DEFAULT_RING_ADD_PATH,
): void {
  if (ringBitsOf(target) !== ringBitsOf(other) || target.length !== other.length) {
    throw new MalformedMessageError(
      `cannot add a ${ringBitsOf(other)}-bit vector of length ${other.length} to a ${ringBitsOf(target)}-bit vector of length ${target.length}`,
    );
  }
  const t = words32(target);
  const m = words32(other);
  const bits = ringBitsOf(target);
  if (path === 'native' && NATIVE) NATIVE.addVectors(target, other, sign, bits);
  else if (path === 'scalar' || !KERNEL) addWordsScalar(t, m, 0, bits, sign);
  else {
    const mBytes = ringToBytes(other);
    for (let off = 0; off < mBytes.length; off += CHUNK_BYTES) {
      addWordsSimd(t, mBytes.subarray(off, off + CHUNK_BYTES), off / 4, bits, sign);
    }
  }
}

/**
 * t[off..] += sign · m, where m is little-endian k-bit words as bytes (any alignment), at most
 * KERNEL_CHUNK_BYTES of them and `off` counts 32-bit words: copy both into the kernel's memory,
 * add there, copy the target back.
 */
function addWordsSimd(t: Uint32Array, m: Uint8Array, off: number, bits: RingBits, sign: 1 | -1): void {
  const k = KERNEL!;
  const mem = kernelBytes!;
  const len = m.length;
  const tBytes = new Uint8Array(t.buffer, t.byteOffset + off * 4, len);
  mem.set(tBytes, 0);
  mem.set(m, CHUNK_BYTES);
  // Round up to whole loop steps; the padding lanes hold stale bytes and are never copied back.
  const padded = Math.ceil(len / KERNEL_STEP_BYTES) * KERNEL_STEP_BYTES;
  if (bits === 32) (sign === 1 ? k.add32 : k.sub32)(0, CHUNK_BYTES, padded);
  else (sign === 1 ? k.add64 : k.sub64)(0, CHUNK_BYTES, padded);
  tBytes.set(mem.subarray(0, len));
}

const kernelBytes = KERNEL ? new Uint8Array(KERNEL.memory.buffer) : undefined;

/**
 * The reference: t[off..] += sign · m as k-bit little-endian words, m.length words of 32 bits.
 * Exported for the property test that pins the SIMD path to it.
 */
export function addWordsScalar(
  t: Uint32Array,
  m: Uint32Array,
  off: number,
  bits: RingBits,
  sign: 1 | -1,
): void {
  const n = m.length;
  if (bits === 32) {
    // Int32 views keep every value a small integer for V8 (Uint32 words ≥ 2^31 would be boxed as
    // doubles), and `| 0` is reduction mod 2^32, so this is ring arithmetic at about 2× the speed.
    const ti = new Int32Array(t.buffer, t.byteOffset + off * 4, n);
    const mi = new Int32Array(m.buffer, m.byteOffset, n);
    if (sign === 1) for (let i = 0; i < n; i = (i + 1) | 0) ti[i] = (ti[i]! + mi[i]!) | 0;
    else for (let i = 0; i < n; i = (i + 1) | 0) ti[i] = (ti[i]! - mi[i]!) | 0;
    return;
  }
  if (sign === 1) {
    for (let i = 0; i < n; i += 2) {
      const lo = t[off + i]! + m[i]!;
      t[off + i] = lo;
      t[off + i + 1] = t[off + i + 1]! + m[i + 1]! + (lo > 0xffffffff ? 1 : 0);
    }
  } else {
    for (let i = 0; i < n; i += 2) {
      const lo = t[off + i]! - m[i]!;
      t[off + i] = lo;
      t[off + i + 1] = t[off + i + 1]! - m[i + 1]! - (lo < 0 ? 1 : 0);
    }
  }
}

/** One mask to add: PRG(seed) with a sign (+1 adds, −1 subtracts). */
export interface SignedMask {
  seed: Uint8Array;
  sign: 1 | -1;
}

/**
 * target += sign · PRG(seed), the mask that `seed` expands to in this round. The keystream is
 * produced and consumed in 32 KiB chunks, so memory stays flat for any length. `path` is for tests
 * and benchmarks; both paths give the same bits.
 */
export function addMaskInto(
  target: RingVector,
  seed: Uint8Array,
  ctx: RoundContext,
  sign: 1 | -1 = 1,
  path: RingAddPath = DEFAULT_RING_ADD_PATH,
): void {
  addMasksInto(target, [{ seed, sign }], ctx, path);
}

/**
 * target += Σ sign_i · PRG(seed_i): a worker's self mask and pairwise masks, or what the aggregator
 * removes, in one pass. On the SIMD path each 32 KiB chunk of the target is copied into the
 * kernel's memory once, receives every mask's keystream for that chunk, and is copied back once,
 * instead of once per mask. The result is the same as calling addMaskInto for each mask.
 */
export function addMasksInto(
  target: RingVector,
  masks: readonly SignedMask[],
  ctx: RoundContext,
  path: RingAddPath = DEFAULT_RING_ADD_PATH,
): void {
  addMasksFrom(target, target, masks, ctx, path);
}

/**
 * target = source + Σ sign_i · PRG(seed_i), leaving `source` untouched: a worker masks its input
 * straight into the outgoing vector, without first copying the input (a whole-vector pass, 4 MB
 * at d = 1e6). `source` may be `target`. Throws MalformedMessageError unless both have the same
 * width and length.
 */
export function addMasksFrom(
  target: RingVector,
  source: RingVector,
  masks: readonly SignedMask[],
  ctx: RoundContext,
  path: RingAddPath = DEFAULT_RING_ADD_PATH,
): void {
  const bits = ringBitsOf(target);
  if (ringBitsOf(source) !== bits || source.length !== target.length) {
    throw new MalformedMessageError(
      `cannot mask a ${ringBitsOf(source)}-bit vector of length ${source.length} into a ${bits}-bit vector of length ${target.length}`,
    );
  }
  if (path === 'native' && NATIVE) {
    const keys = new Uint8Array(16 * masks.length);
    const signs = new Int8Array(masks.length);
    masks.forEach((m, i) => {
      keys.set(deriveKey(m.seed, ctx, 'mask-prg', 16), 16 * i);
      signs[i] = m.sign;
    });
    NATIVE.addMasks(target, source, keys, signs, bits);
    return;
  }
  const t = words32(target);
  const total = t.length * 4;
  const ciphers = masks.map((m) =>
    createCipheriv('aes-128-ctr', deriveKey(m.seed, ctx, 'mask-prg', 16), ZERO_IV),
  );
  if (path === 'scalar' || !KERNEL) {
    if (source !== target) t.set(words32(source));
    masks.forEach((m, i) => {
      for (let off = 0; off < total; off += CHUNK_BYTES) {
        const len = Math.min(CHUNK_BYTES, total - off);
        let ks = ciphers[i]!.update(len === CHUNK_BYTES ? ZERO : ZERO.subarray(0, len));
        if (ks.byteOffset % 4 !== 0) ks = Buffer.from(ks); // pooled small buffers may be unaligned
        addWordsScalar(t, new Uint32Array(ks.buffer, ks.byteOffset, len / 4), off / 4, bits, m.sign);
      }
    });
    return;
  }
  const k = KERNEL;
  const mem = kernelBytes!;
  const add = bits === 32 ? k.add32 : k.add64;
  const sub = bits === 32 ? k.sub32 : k.sub64;
  for (let off = 0; off < total; off += CHUNK_BYTES) {
    const len = Math.min(CHUNK_BYTES, total - off);
    const zero = len === CHUNK_BYTES ? ZERO : ZERO.subarray(0, len);
    // Round up to whole loop steps; the padding lanes hold stale bytes and are never copied back.
    const padded = Math.ceil(len / KERNEL_STEP_BYTES) * KERNEL_STEP_BYTES;
    mem.set(new Uint8Array(source.buffer, source.byteOffset + off, len), 0);
    masks.forEach((m, i) => {
      mem.set(ciphers[i]!.update(zero), CHUNK_BYTES);
      (m.sign === 1 ? add : sub)(0, CHUNK_BYTES, padded);
    });
    new Uint8Array(t.buffer, t.byteOffset + off, len).set(mem.subarray(0, len));
  }
}

/** PRG(seed) as a fresh ring vector (for tests and benchmarks). */
export function expandMask(seed: Uint8Array, ctx: RoundContext, bits: RingBits, length: number): RingVector {
  const v = allocRing(bits, length);
  addMaskInto(v, seed, ctx, 1);
  return v;
}
