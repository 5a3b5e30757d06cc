// Shamir t-of-n secret sharing over the prime field GF(p), p = 2^256 - 189 (the largest prime
// below 2^256; shamir.test.ts checks primality with Miller-Rabin). A 256-bit prime lets one share
// carry a whole 32-byte secret (an X25519 private key or a mask seed) and, unlike byte-wise
// GF(2^8) sharing, puts no ceiling of 255 on the number of workers. Secrets must be < p; the
// generators in keys.ts draw them by rejection, which rejects with probability 189 / 2^256.
import { randomBytes } from 'node:crypto';
import { ConfigError, MalformedMessageError, ThresholdError } from './errors.js';

/** The field modulus, 2^256 - 189. */
export const FIELD_PRIME = (1n << 256n) - 189n;
/** Bytes of one share value and one secret (big-endian field element). */
export const FIELD_BYTES = 32;

/** One share: the evaluation point (1-based worker index) and the polynomial's value there. */
export interface Share {
  /** Evaluation point, an integer in [1, 2^31). Never 0: f(0) is the secret. */
  x: number;
  /** f(x), 32 bytes big-endian, < FIELD_PRIME. */
  y: Uint8Array;
}

export function bytesToField(bytes: Uint8Array): bigint {
  if (bytes.length !== FIELD_BYTES) {
    throw new MalformedMessageError(`a field element is ${FIELD_BYTES} bytes, got ${bytes.length}`);
  }
  const v = BigInt('0x' + (Buffer.from(bytes).toString('hex') || '0'));
  if (v >= FIELD_PRIME) throw new MalformedMessageError('a field element must be below 2^256 - 189');
  return v;
}

export function fieldToBytes(v: bigint): Uint8Array {
  return Uint8Array.from(Buffer.from(v.toString(16).padStart(FIELD_BYTES * 2, '0'), 'hex'));
}

/** A uniformly random field element (rejection sampling from 32 random bytes). */
export function randomFieldElement(): bigint {
  for (;;) {
    const v = BigInt('0x' + randomBytes(FIELD_BYTES).toString('hex'));
    if (v < FIELD_PRIME) return v;
  }
}

function mod(a: bigint): bigint {
  const r = a % FIELD_PRIME;
  return r < 0n ? r + FIELD_PRIME : r;
}

/** a^-1 mod p by the extended Euclidean algorithm; a must be nonzero mod p. */
export function invert(a: bigint): bigint {
  let [r0, r1] = [mod(a), FIELD_PRIME];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  if (r0 !== 1n) throw new RangeError('zero has no inverse');
  return mod(s0);
}

function checkPoints(xs: readonly number[]): void {
  const seen = new Set<number>();
  for (const x of xs) {
    if (!Number.isInteger(x) || x < 1 || x >= 2 ** 31) {
      throw new MalformedMessageError(`share point ${x} is not an integer in [1, 2^31)`);
    }
    if (seen.has(x)) throw new MalformedMessageError(`share point ${x} appears twice`);
    seen.add(x);
  }
}

/**
 * Splits `secret` (32 bytes, < p) into one share per point in `xs` so that any `threshold` of
 * them reconstruct it and fewer reveal nothing. Throws ConfigError when threshold is not in
 * [1, xs.length], MalformedMessageError on a bad secret or repeated/invalid points.
 */
export function splitSecret(secret: Uint8Array, xs: readonly number[], threshold: number): Share[] {
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > xs.length) {
    throw new ConfigError('threshold', `must be an integer in [1, ${xs.length}], got ${threshold}`);
  }
  checkPoints(xs);
  const coeffs = [bytesToField(secret)];
  for (let i = 1; i < threshold; i++) coeffs.push(randomFieldElement());
  return xs.map((x) => {
    const bx = BigInt(x);
    let acc = 0n;
    for (let i = coeffs.length - 1; i >= 0; i--) acc = (acc * bx + coeffs[i]!) % FIELD_PRIME;
    return { x, y: fieldToBytes(acc) };
  });
}

/** Lagrange coefficients λ_i with f(0) = Σ λ_i f(x_i), for distinct nonzero points. */
export function lagrangeAtZero(xs: readonly number[]): bigint[] {
  checkPoints(xs);
  const bx = xs.map(BigInt);
  return bx.map((xi, i) => {
    let num = 1n;
    let den = 1n;
    for (let j = 0; j < bx.length; j++) {
      if (j === i) continue;
      const xj = bx[j]!;
      num = (num * xj) % FIELD_PRIME;
      den = mod(den * (xj - xi));
    }
    return (num * invert(den)) % FIELD_PRIME;
  });
}

// The aggregator rebuilds one secret per worker, almost always from the same holders (in the
// complete graph, the first t survivors), so the coefficients for the last few point sets are
// kept: t inversions and t² multiplications of 256-bit BigInts per secret otherwise (≈ 70 µs at
// t = 17). The points are public (1-based worker indices), so keeping them reveals nothing.
const LAGRANGE_CACHE_SIZE = 8;
const lagrangeCache = new Map<string, readonly bigint[]>();

function cachedLagrangeAtZero(xs: readonly number[]): readonly bigint[] {
  const key = xs.join(',');
  const hit = lagrangeCache.get(key);
  if (hit) return hit;
  const lambdas = lagrangeAtZero(xs);
  if (lagrangeCache.size >= LAGRANGE_CACHE_SIZE) lagrangeCache.delete(lagrangeCache.keys().next().value!);
  lagrangeCache.set(key, lambdas);
  return lambdas;
}

/**
 * Reconstructs the secret from at least `threshold` shares (the first `threshold` after sorting
 * by point are used). Throws ThresholdError with too few shares. With shares from a different
 * polynomial the result is a wrong secret, not an error: integrity is the channel's job (AES-GCM).
 */
export function combineShares(shares: readonly Share[], threshold: number): Uint8Array {
  if (shares.length < threshold) {
    throw new ThresholdError(
      `${shares.length} shares cannot reconstruct a ${threshold}-of-n secret; need ${threshold - shares.length} more`,
      { survivors: shares.length, threshold },
    );
  }
  const used = [...shares].sort((a, b) => a.x - b.x).slice(0, threshold);
  const lambdas = cachedLagrangeAtZero(used.map((s) => s.x));
  let acc = 0n;
  used.forEach((s, i) => {
    acc = (acc + lambdas[i]! * bytesToField(s.y)) % FIELD_PRIME;
  });
  return fieldToBytes(acc);
}
