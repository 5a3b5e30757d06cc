// HE mode: the alternative to masking, for comparison and for users who prefer it. Workers
// encrypt their encoded vectors under a BFV public key (node-seal, batching: one ciphertext holds
// slotCount integers); the aggregator adds ciphertexts homomorphically; a separate key holder, the
// only party with the secret key, decrypts only the aggregate. The interface mirrors masking: the
// worker hands in the same encoded integer vector and the coordinator gets the same ring sum.
//
// Parameters: N = 4096 slots, the default 109-bit coefficient modulus at 128-bit security, and a
// 60-bit batching plain modulus p. Integers are encoded centred; the sum is exact while every
// coordinate of the true sum satisfies |Σ| < p/2 (≈ 2^59), which planEncoding's bound checks via
// `heMaxSumBound`. Additions cost about one bit of noise budget per doubling of n.
//
// node-seal 6.x (pinned at 6.0.3: its WebAssembly runs on Node 20; 7.x needs exnref exception
// handling and Wasm GC, i.e. Node ≥ 22) exposes factory functions rather than classes
// (`seal.CipherText()`, not `new seal.Ciphertext()`), `saveArray`/`loadArray` for bytes,
// `Evaluator.add(a, b, destination)` and `BatchEncoder.decodeBigInt(plain, signed)`. Vectors go
// in and out through Int32Array / BigInt64Array views, never through doubles, so 64-bit sums above
// 2^53 stay exact.
import type { SEALLibrary } from 'node-seal/implementation/seal.js';
import { ConfigError, MalformedMessageError, UnavailableError } from './errors.js';
import { HE_PLAIN_MODULUS } from './he-pad.js';
import { allocRing, toSigned, type RingBits, type RingVector } from './masking.js';

type Seal = SEALLibrary;
type Ctx = ReturnType<Seal['Context']>;

/** Largest |coordinate of the sum| HE mode decodes exactly (p/2 for the 60-bit plain modulus, rounded down). */
export const HE_MAX_SUM_BOUND = 2 ** 58;
const N = 4096;
/** Values per ciphertext (the BFV slot count, N). */
export const HE_SLOTS = N;
/**
 * An upper bound on one serialized ciphertext: two polynomials of N coefficients in the two
 * data-level primes of the default 109-bit modulus, 8 bytes each (131 072 bytes), plus SEAL's
 * header and metadata and zstd's frame overhead on incompressible data, rounded up to 132 KiB.
 * Measured: ≈ 88 KiB (zstd). A test pins real ciphertexts under it.
 */
export const HE_CIPHERTEXT_MAX_BYTES = 132 * 1024;

/** Upper bound on the bytes of one encrypted vector of `length` values (its ciphertexts). */
export function heCiphertextBytesBound(length: number): number {
  return Math.ceil(length / N) * HE_CIPHERTEXT_MAX_BYTES;
}

let sealPromise: Promise<Seal> | undefined;

/**
 * Loads node-seal's WebAssembly once per process (about 30 ms). Throws UnavailableError, with the
 * loader's error as `cause`, when the module cannot be imported or instantiated.
 */
export async function loadSeal(): Promise<Seal> {
  sealPromise ??= (async () => {
    try {
      // node-seal ships a CommonJS bundle whose module.exports is the factory; its .d.ts declares
      // it as an ES default export, so TypeScript (NodeNext) types the default as the namespace.
      const mod: { default: unknown } = await import('node-seal');
      const factory = mod.default as () => Promise<Seal>;
      return await factory();
    } catch (cause) {
      sealPromise = undefined;
      throw new UnavailableError(
        `node-seal could not start on Node ${process.version} (${cause instanceof Error ? cause.message : String(cause)}); check that node-seal 6.x is installed in secure-agg, or use masking mode`,
        { cause },
      );
    }
  })();
  return sealPromise;
}

function context(seal: Seal): Ctx {
  const parms = seal.EncryptionParameters(seal.SchemeType.bfv);
  parms.setPolyModulusDegree(N);
  parms.setCoeffModulus(seal.CoeffModulus.BFVDefault(N, seal.SecurityLevel.tc128));
  const p = seal.PlainModulus.Batching(N, 60);
  // he-pad.ts computes pads mod this prime without a SEAL context; they must agree.
  if (p.value !== HE_PLAIN_MODULUS)
    throw new ConfigError('he', `SEAL chose plain modulus ${p.value}, he-pad.ts assumes ${HE_PLAIN_MODULUS}`);
  parms.setPlainModulus(p);
  p.delete();
  const ctx = seal.Context(parms, true, seal.SecurityLevel.tc128);
  parms.delete();
  if (!ctx.parametersSet()) throw new ConfigError('he', `SEAL refused the BFV parameters: ${ctx.toHuman()}`);
  return ctx;
}

/** An aggregate ciphertext: the encrypted sum of `inputs` vectors, one ciphertext per N slots. */
export interface HeAggregate {
  chunks: Uint8Array[];
  inputs: number;
  length: number;
  bits: RingBits;
}

/** The only holder of the secret key. It decrypts aggregates of at least `minInputs` inputs. */
export class HeKeyHolder {
  readonly #seal: Seal;
  readonly #ctx: Ctx;
  readonly publicKey: Uint8Array;
  readonly minInputs: number;
  readonly #kg: ReturnType<Seal['KeyGenerator']>;

  private constructor(seal: Seal, minInputs: number) {
    this.#seal = seal;
    this.#ctx = context(seal);
    this.#kg = seal.KeyGenerator(this.#ctx);
    const pk = this.#kg.createPublicKey();
    this.publicKey = pk.saveArray(seal.ComprModeType.zstd);
    pk.delete();
    this.minInputs = minInputs;
  }

  /** Generates a fresh key pair. Throws ConfigError unless minInputs ≥ 1, UnavailableError as loadSeal. */
  static async create(minInputs: number): Promise<HeKeyHolder> {
    if (!Number.isSafeInteger(minInputs) || minInputs < 1)
      throw new ConfigError('minInputs', `must be ≥ 1, got ${minInputs}`);
    return new HeKeyHolder(await loadSeal(), minInputs);
  }

  /**
   * Decrypts an aggregate to the ring sum (the true sum mod 2^bits, exact while |Σ| < 2^58).
   * Throws ConfigError for aggregates of fewer than minInputs inputs or with the wrong number of
   * ciphertexts; SEAL's own error for a ciphertext that is not valid under these parameters.
   */
  decryptSum(agg: HeAggregate): RingVector {
    if (agg.inputs < this.minInputs) {
      throw new ConfigError(
        'inputs',
        `the key holder decrypts only sums of ≥ ${this.minInputs} inputs, got ${agg.inputs}`,
      );
    }
    const want = Math.ceil(agg.length / N);
    if (agg.chunks.length !== want) {
      throw new ConfigError(
        'chunks',
        `expected ${want} ciphertexts for ${agg.length} values, got ${agg.chunks.length}`,
      );
    }
    const seal = this.#seal;
    const sk = this.#kg.secretKey();
    const dec = seal.Decryptor(this.#ctx, sk);
    const be = seal.BatchEncoder(this.#ctx);
    const ct = seal.CipherText();
    const pt = seal.PlainText();
    const out = allocRing(agg.bits, agg.length);
    const signed = toSigned(out);
    try {
      agg.chunks.forEach((c, k) => {
        ct.loadArray(this.#ctx, c);
        dec.decrypt(ct, pt);
        const vals = (be.decodeBigInt(pt, true) as BigInt64Array).subarray(
          0,
          Math.min(N, agg.length - k * N),
        );
        if (signed instanceof BigInt64Array) signed.set(vals, k * N);
        else for (let i = 0; i < vals.length; i++) signed[k * N + i] = Number(BigInt.asIntN(32, vals[i]!));
      });
    } finally {
      for (const o of [ct, pt, dec, be, sk]) o.delete();
    }
    return out;
  }

  /**
   * Decrypts `chunks` (a sum of padded contributions, he-pad.ts) to `length` residues in [0, p),
   * with no policy: HeKeyService decides what may be decrypted. Throws ConfigError for the wrong
   * number of ciphertexts, SEAL's error for bytes that are not a ciphertext under these parameters.
   */
  decryptResidues(chunks: readonly Uint8Array[], length: number): BigUint64Array {
    const want = Math.ceil(length / N);
    if (chunks.length !== want)
      throw new ConfigError(
        'chunks',
        `expected ${want} ciphertexts for ${length} values, got ${chunks.length}`,
      );
    const seal = this.#seal;
    const sk = this.#kg.secretKey();
    const dec = seal.Decryptor(this.#ctx, sk);
    const be = seal.BatchEncoder(this.#ctx);
    const ct = seal.CipherText();
    const pt = seal.PlainText();
    const out = new BigUint64Array(length);
    try {
      chunks.forEach((c, k) => {
        ct.loadArray(this.#ctx, c);
        dec.decrypt(ct, pt);
        const vals = (be.decodeBigInt(pt, false) as BigUint64Array).subarray(0, Math.min(N, length - k * N));
        out.set(vals, k * N);
      });
    } finally {
      for (const o of [ct, pt, dec, be, sk]) o.delete();
    }
    return out;
  }
}

/** Worker side: encrypts an encoded vector under the key holder's public key. */
export class HeEncryptor {
  readonly #seal: Seal;
  readonly #ctx: Ctx;
  readonly #enc: ReturnType<Seal['Encryptor']>;
  readonly #be: ReturnType<Seal['BatchEncoder']>;

  private constructor(seal: Seal, publicKey: Uint8Array) {
    this.#seal = seal;
    this.#ctx = context(seal);
    const pk = seal.PublicKey();
    pk.loadArray(this.#ctx, publicKey);
    this.#enc = seal.Encryptor(this.#ctx, pk);
    pk.delete();
    this.#be = seal.BatchEncoder(this.#ctx);
  }

  /** Throws SEAL's error when `publicKey` is not a key for these parameters, UnavailableError as loadSeal. */
  static async create(publicKey: Uint8Array): Promise<HeEncryptor> {
    return new HeEncryptor(await loadSeal(), publicKey);
  }

  /**
   * Encrypts the centred reading of `v` (a 32-bit ring vector as Int32 values, a 64-bit one as
   * Int64), one zstd-compressed ciphertext per N values.
   */
  encrypt(v: RingVector): Uint8Array[] {
    return this.#encryptChunks(toSigned(v));
  }

  /** Encrypts residues in [0, p) (a padded contribution, he-pad.ts), one ciphertext per N. */
  encryptResidues(v: BigUint64Array): Uint8Array[] {
    return this.#encryptChunks(v);
  }

  /** Batch-encodes and encrypts `v`, N values per zstd-compressed ciphertext. */
  #encryptChunks(v: Int32Array | BigInt64Array | BigUint64Array): Uint8Array[] {
    const chunks: Uint8Array[] = [];
    const pt = this.#seal.PlainText();
    const ct = this.#seal.CipherText();
    try {
      for (let off = 0; off < v.length; off += N) {
        this.#be.encode(v.subarray(off, Math.min(off + N, v.length)), pt);
        this.#enc.encrypt(pt, ct);
        chunks.push(ct.saveArray(this.#seal.ComprModeType.zstd));
      }
    } finally {
      pt.delete();
      ct.delete();
    }
    return chunks;
  }
}

/** Aggregator side: adds ciphertexts; never holds a key that could decrypt them. */
export class HeAccumulator {
  readonly #seal: Seal;
  readonly #ctx: Ctx;
  readonly #ev: ReturnType<Seal['Evaluator']>;
  #acc: ReturnType<Seal['CipherText']>[] = [];
  #inputs = 0;
  readonly length: number;
  readonly bits: RingBits;

  private constructor(seal: Seal, length: number, bits: RingBits) {
    this.#seal = seal;
    this.#ctx = context(seal);
    this.#ev = seal.Evaluator(this.#ctx);
    this.length = length;
    this.bits = bits;
  }

  static async create(length: number, bits: RingBits): Promise<HeAccumulator> {
    return new HeAccumulator(await loadSeal(), length, bits);
  }

  /**
   * Adds one worker's ciphertexts. Throws ConfigError for the wrong number of chunks and
   * MalformedMessageError for bytes that are not a ciphertext under these parameters; either way
   * the running sum is unchanged.
   */
  add(chunks: readonly Uint8Array[]): void {
    const want = Math.ceil(this.length / N);
    if (chunks.length !== want)
      throw new ConfigError('chunks', `expected ${want} ciphertexts, got ${chunks.length}`);
    // Load every chunk before adding any, so that a bad chunk leaves the running sum untouched.
    const loaded: ReturnType<Seal['CipherText']>[] = [];
    chunks.forEach((c, k) => {
      const ct = this.#seal.CipherText();
      loaded.push(ct);
      try {
        ct.loadArray(this.#ctx, c);
      } catch (cause) {
        for (const l of loaded) l.delete();
        throw new MalformedMessageError(
          `ciphertext ${k} of ${want} is not a BFV ciphertext for these parameters (${cause instanceof Error ? cause.message : String(cause)})`,
          { cause },
        );
      }
    });
    if (this.#inputs === 0) this.#acc = loaded;
    else {
      loaded.forEach((ct, k) => {
        const acc = this.#acc[k]!;
        this.#ev.add(acc, ct, acc);
        ct.delete();
      });
    }
    this.#inputs++;
  }

  result(): HeAggregate {
    return {
      chunks: this.#acc.map((c) => c.saveArray(this.#seal.ComprModeType.zstd)),
      inputs: this.#inputs,
      length: this.length,
      bits: this.bits,
    };
  }

  /**
   * Frees the running sum's ciphertexts and the evaluator in node-seal's WebAssembly heap, which
   * the JavaScript garbage collector does not reclaim; a coordinator that makes one accumulator per
   * round calls it when the round ends. The accumulator is unusable afterwards.
   */
  dispose(): void {
    for (const c of this.#acc) c.delete();
    this.#acc = [];
    this.#ev.delete();
    this.#ctx.delete();
  }
}
