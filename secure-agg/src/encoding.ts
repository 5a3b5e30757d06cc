// Fixed-point encoding of real vectors into Z_2^k with randomized rounding, and the no-overflow
// bound that picks k. x encodes to the integer ⌊s·x⌋ + Bernoulli(frac(s·x)) (unbiased; the
// Bernoulli draws come from node:crypto), plus the worker's integer noise share, reduced mod 2^k.
// Summing n such vectors in the ring and reading the result as a centred (two's-complement)
// integer gives the exact integer sum as long as every coordinate of the true sum lies in
// (-2^(k-1), 2^(k-1)). planEncoding proves that with a stated failure probability:
//
//   |Σ_u x̃_u,i| ≤ n·(s·C + 1)              (|x_u,i| ≤ ‖x_u‖₂ ≤ C; rounding moves a value < 1)
//   |noise_i|    ≤ a = L/3 + √(L²/9 + 2·L·σ²),  L = ln(2d/δ),  σ = s·noiseStd (integer units)
//
// where the noise bound is Bernstein's inequality for a sum of independent unit-step variables
// (it covers Skellam noise, and discrete Gaussian noise, whose sub-Gaussian tail is smaller),
// union-bounded over the d coordinates so that P[any coordinate overflows] ≤ δ. The smallest k in
// {32, 64} with n·(s·C + 1) + a < 2^(k-1) is chosen; if none fits, the configuration is refused
// with the numbers in the message.
//
// Where the native kernel is built (native-kernel.ts), `encode` runs the same arithmetic there,
// with its coins from AES-128-CTR under a fresh 128-bit key from node:crypto (a CTR-DRBG-style
// generator: OpenSSL's own RAND_bytes is AES-CTR based) instead of from randomFillSync directly.
import { randomBytes, randomFillSync } from 'node:crypto';
import { ConfigError, MalformedMessageError } from './errors.js';
import {
  allocRing,
  allocRingForOverwrite,
  ringBitsOf,
  words32,
  type RingBits,
  type RingVector,
} from './masking.js';
import { nativeKernel } from './native-kernel.js';

/** User options for the encoding; all real quantities are in the units of the gradient. */
export interface EncodingOptions {
  /** ℓ2 clip norm C of one worker's contribution (> 0). */
  clipNorm: number;
  /** Fixed-point scale s, integers per unit: x ↦ round(s·x) (> 0). */
  scale: number;
  /** Upper bound on the number of workers n whose vectors are summed (≥ 1). */
  workers: number;
  /** Vector length d (≥ 1). */
  dimension: number;
  /**
   * Standard deviation of the total noise in the sum, in gradient units; pass the worst case
   * realized over the allowed dropout patterns. Default 0 (no noise).
   */
  noiseStd?: number;
  /** Allowed probability that any coordinate of the sum overflows. Default 1e-9. */
  failureProbability?: number;
  /** Ring width: 32, 64, or 'auto' (the smallest that is safe). Default 'auto'. */
  bits?: RingBits | 'auto';
}

/** A validated encoding plan. */
export interface Encoding {
  readonly bits: RingBits;
  readonly scale: number;
  readonly clipNorm: number;
  readonly workers: number;
  readonly dimension: number;
  readonly noiseStd: number;
  readonly failureProbability: number;
  /** Bound on |any coordinate of the integer sum| that holds with prob. ≥ 1 - failureProbability. */
  readonly sumBound: number;
  /**
   * Deterministic bound on ‖x̃‖₂ of one encoded vector before noise, in integer units:
   * s·C + √d (randomized rounding moves each coordinate by less than 1). The accountant calibrates
   * noise to this sensitivity.
   */
  readonly encodedNormBound: number;
}

function positive(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new ConfigError(field, `must be a finite number > 0, got ${String(v)}`);
  }
  return v;
}

function positiveInt(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw new ConfigError(field, `must be an integer ≥ 1, got ${String(v)}`);
  }
  return v;
}

/** The deviation a with P[|noise| > a] ≤ δ/d per coordinate (Bernstein, unit steps). */
export function noiseTailBound(sigmaInt: number, dimension: number, delta: number): number {
  if (sigmaInt === 0) return 0;
  const L = Math.log((2 * dimension) / delta);
  return L / 3 + Math.sqrt((L * L) / 9 + 2 * L * sigmaInt * sigmaInt);
}

/**
 * Validates options and chooses the ring width. Throws ConfigError naming the field and, for an
 * overflow, the bound and the ring limit, with what to change.
 */
export function planEncoding(options: EncodingOptions): Encoding {
  const clipNorm = positive('clipNorm', options.clipNorm);
  const scale = positive('scale', options.scale);
  const workers = positiveInt('workers', options.workers);
  const dimension = positiveInt('dimension', options.dimension);
  const noiseStd = options.noiseStd ?? 0;
  if (!Number.isFinite(noiseStd) || noiseStd < 0) {
    throw new ConfigError('noiseStd', `must be a finite number ≥ 0, got ${noiseStd}`);
  }
  const failureProbability = options.failureProbability ?? 1e-9;
  if (!(failureProbability > 0 && failureProbability < 1)) {
    throw new ConfigError('failureProbability', `must be in (0, 1), got ${failureProbability}`);
  }
  const bitsOpt = options.bits ?? 'auto';
  if (bitsOpt !== 32 && bitsOpt !== 64 && bitsOpt !== 'auto') {
    throw new ConfigError('bits', `must be 32, 64 or 'auto', got ${String(bitsOpt)}`);
  }
  const perWorker = scale * clipNorm + 1;
  if (perWorker > 2 ** 52) {
    throw new ConfigError(
      'scale',
      `scale·clipNorm = ${scale * clipNorm} exceeds 2^52, beyond exact float64 integers; lower the scale`,
    );
  }
  const noise = noiseTailBound(scale * noiseStd, dimension, failureProbability);
  const sumBound = Math.ceil(workers * perWorker + noise);
  const fits = (k: RingBits) => sumBound < 2 ** (k - 1);
  const candidates: RingBits[] = bitsOpt === 'auto' ? [32, 64] : [bitsOpt];
  const bits = candidates.find(fits);
  if (bits === undefined) {
    const k = candidates[candidates.length - 1]!;
    throw new ConfigError(
      'bits',
      `the sum of ${workers} workers can reach ${sumBound} (= ${workers}·(${scale}·${clipNorm} + 1) + ` +
        `noise tail ${noise.toFixed(1)} at failure probability ${failureProbability} over ${dimension} coordinates), ` +
        `which does not fit in Z_2^${k} (|sum| < 2^${k - 1} = ${2 ** (k - 1)}); ` +
        (k === 32 ? "use bits: 64 or 'auto', or lower the scale" : 'lower the scale or the clip norm'),
    );
  }
  return {
    bits,
    scale,
    clipNorm,
    workers,
    dimension,
    noiseStd,
    failureProbability,
    sumBound,
    encodedNormBound: scale * clipNorm + Math.sqrt(dimension),
  };
}

/** Rounding coins drawn per CSPRNG call (16 Ki words = 64 KiB; 4096 made the calls a third of the time). */
const RAND_BATCH = 16384;

/**
 * Encodes one worker's clipped vector (length d, ‖x‖₂ ≤ C) with randomized rounding, adding
 * `integerNoise` (integers, the worker's noise share) if given. Throws MalformedMessageError for
 * a wrong length, a non-finite value or a norm above the clip norm (which would void the bound).
 */
export function encode(
  encoding: Encoding,
  values: ArrayLike<number>,
  integerNoise?: ArrayLike<number>,
): RingVector {
  const native = nativeKernel();
  if (
    native &&
    (values instanceof Float32Array || values instanceof Float64Array) &&
    (integerNoise === undefined || integerNoise instanceof Float64Array)
  ) {
    return encodeNative(encoding, values, integerNoise, randomBytes(16));
  }
  return encodeWithCoins(encoding, values, integerNoise, randomFillSync);
}

/**
 * encode in the native kernel with the rounding coins AES-128-CTR(key) (one little-endian 32-bit
 * word per coordinate, in order); exported so that tests can pin it to encodeWithCoins with the
 * same coins. Throws like encode, and Error where the native kernel is not available.
 */
export function encodeNative(
  encoding: Encoding,
  values: Float32Array | Float64Array,
  integerNoise: Float64Array | undefined,
  key: Uint8Array,
): RingVector {
  const native = nativeKernel();
  if (!native) throw new Error('the native mask kernel is not built (npm run setup builds it)');
  checkInput(encoding, values, integerNoise, native.sumSquares(values));
  const out = allocRingForOverwrite(encoding.bits, encoding.dimension); // the kernel writes every word
  native.encode(values, integerNoise ?? null, encoding.scale, out, encoding.bits, key);
  return out;
}

/** Length, finiteness and norm checks; `sq` is Σ x² (non-finite when some value is). */
function checkInput(
  encoding: Encoding,
  values: ArrayLike<number>,
  integerNoise: ArrayLike<number> | undefined,
  sq: number,
): void {
  const d = encoding.dimension;
  if (values.length !== d) {
    throw new MalformedMessageError(`expected a vector of length ${d}, got ${values.length}`);
  }
  if (integerNoise && integerNoise.length !== d) {
    throw new MalformedMessageError(`expected noise of length ${d}, got ${integerNoise.length}`);
  }
  // NaN and ±Infinity make the sum non-finite, so the per-value check runs only then.
  if (!Number.isFinite(sq)) {
    for (let i = 0; i < d; i++) {
      const x = values[i]!;
      if (!Number.isFinite(x)) throw new MalformedMessageError(`value ${i} is not finite (${x})`);
    }
  }
  if (Math.sqrt(sq) > encoding.clipNorm * (1 + 1e-6)) {
    throw new MalformedMessageError(
      `the vector's ℓ2 norm ${Math.sqrt(sq)} exceeds the clip norm ${encoding.clipNorm}; clip before encoding`,
    );
  }
}

/**
 * encode with the source of rounding coins as a parameter (node:crypto's randomFillSync in
 * encode), so that tests can pin this loop to the reference one with the same coins. Coins are
 * drawn RAND_BATCH words at a time, one word per coordinate, in order.
 */
export function encodeWithCoins(
  encoding: Encoding,
  values: ArrayLike<number>,
  integerNoise: ArrayLike<number> | undefined,
  fillCoins: (buf: Uint32Array) => void,
): RingVector {
  const d = encoding.dimension;
  let sq = 0;
  for (let i = 0; i < Math.min(d, values.length); i++) {
    const x = values[i]!;
    sq += x * x;
  }
  checkInput(encoding, values, integerNoise, sq);
  const out = allocRing(encoding.bits, d);
  const w = words32(out);
  // Int32 stores keep the k = 32 loop on small integers (`| 0` is reduction mod 2^32).
  const w32 = new Int32Array(w.buffer, w.byteOffset, w.length);
  const rand = new Uint32Array(RAND_BATCH);
  const s = encoding.scale;
  for (let base = 0; base < d; base += RAND_BATCH) {
    fillCoins(rand);
    const end = Math.min(d, base + RAND_BATCH);
    // Round up with probability frac(v), resolved to 2^-32. The coin is `(r < p) | 0`, not
    // `r < p ? 1 : 0`: V8 compiles the ternary to a branch that a fair coin mispredicts half the
    // time (4× slower over the whole loop); `| 0` turns the comparison into a 0/1 value.
    if (encoding.bits === 32 && !integerNoise) {
      for (let i = base; i < end; i++) {
        const v = values[i]! * s;
        const f = Math.floor(v);
        w32[i] = (f + (((rand[i - base]! < (v - f) * 4294967296) as unknown as number) | 0)) | 0;
      }
      continue;
    }
    for (let i = base; i < end; i++) {
      const v = values[i]! * s;
      const f = Math.floor(v);
      let q = f + (((rand[i - base]! < (v - f) * 4294967296) as unknown as number) | 0);
      if (integerNoise) q += integerNoise[i]!;
      if (encoding.bits === 32) w[i] = q;
      else {
        w[2 * i] = q; // ToUint32: q mod 2^32
        w[2 * i + 1] = Math.floor(q / 4294967296);
      }
    }
  }
  return out;
}

/** Encodes integers exactly (already scaled), for coordinators that do their own rounding. */
export function encodeIntegers(bits: RingBits, ints: ArrayLike<number>): RingVector {
  const out = allocRing(bits, ints.length);
  const w = words32(out);
  for (let i = 0; i < ints.length; i++) {
    const q = ints[i]!;
    if (!Number.isSafeInteger(q)) throw new MalformedMessageError(`value ${i} is not a safe integer (${q})`);
    if (bits === 32) w[i] = q;
    else {
      w[2 * i] = q;
      w[2 * i + 1] = Math.floor(q / 4294967296);
    }
  }
  return out;
}

/** The centred integers of a ring vector as float64 (exact while |value| < 2^53). */
export function toIntegers(v: RingVector): Float64Array {
  const w = words32(v);
  const out = new Float64Array(v.length);
  if (ringBitsOf(v) === 32) for (let i = 0; i < v.length; i++) out[i] = w[i]! | 0;
  else for (let i = 0; i < v.length; i++) out[i] = (w[2 * i + 1]! | 0) * 4294967296 + w[2 * i]!;
  return out;
}

/** Decodes an unmasked sum to real units: centred integer / scale. */
export function decode(encoding: Encoding, sum: RingVector): Float64Array {
  if (sum.length !== encoding.dimension || ringBitsOf(sum) !== encoding.bits) {
    throw new MalformedMessageError(
      `expected a ${encoding.bits}-bit sum of length ${encoding.dimension}, got ${ringBitsOf(sum)}-bit of length ${sum.length}`,
    );
  }
  const out = toIntegers(sum);
  for (let i = 0; i < out.length; i++) out[i] = out[i]! / encoding.scale;
  return out;
}
