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
// node-seal 7 ships WebAssembly that needs exception handling with exnref and Wasm GC (Node ≥ 22);
// on older runtimes loadSeal throws UnavailableError saying so.
import type SEALFactory from 'node-seal';
import { UnavailableError, ConfigError } from './errors.js';
import { toIntegers, encodeIntegers } from './encoding.js';
import type { RingBits, RingVector } from './masking.js';

type Seal = Awaited<ReturnType<typeof SEALFactory>>;

/** Largest |coordinate of the sum| HE mode decodes exactly (p/2 for the 60-bit plain modulus, rounded down). */
export const HE_MAX_SUM_BOUND = 2 ** 58;
const N = 4096;

let sealPromise: Promise<Seal> | undefined;

/** Loads node-seal once; throws UnavailableError when this runtime cannot run its WebAssembly. */
export async function loadSeal(): Promise<Seal> {
  sealPromise ??= (async () => {
    try {
      const { default: SEAL } = await import('node-seal');
      return await SEAL();
    } catch (cause) {
      sealPromise = undefined;
      throw new UnavailableError(
        `node-seal could not start on Node ${process.version}: its WebAssembly needs exception handling with exnref and Wasm GC (Node ≥ 22); use masking mode or a newer Node`,
        { cause },
      );
    }
  })();
  return sealPromise;
}

function context(seal: Seal) {
  const parms = new seal.EncryptionParameters(seal.SchemeType.bfv);
  parms.setPolyModulusDegree(N);
  parms.setCoeffModulus(seal.CoeffModulus.BFVDefault(N, seal.SecLevelType.tc128));
  parms.setPlainModulus(seal.PlainModulus.Batching(N, 60));
  return new seal.SEALContext(parms, true, seal.SecLevelType.tc128);
}

function toBytes(x: unknown): Uint8Array {
  return x instanceof Uint8Array ? x : Uint8Array.from(x as ArrayLike<number>);
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
  readonly #ctx: ReturnType<typeof context>;
  readonly publicKey: Uint8Array;
  readonly minInputs: number;
  readonly #kg: InstanceType<Seal['KeyGenerator']>;

  private constructor(seal: Seal, minInputs: number) {
    this.#seal = seal;
    this.#ctx = context(seal);
    this.#kg = new seal.KeyGenerator(this.#ctx);
    this.publicKey = toBytes(this.#kg.createPublicKey().saveToArray(seal.ComprModeType.zstd));
    this.minInputs = minInputs;
  }

  static async create(minInputs: number): Promise<HeKeyHolder> {
    if (!Number.isSafeInteger(minInputs) || minInputs < 1)
      throw new ConfigError('minInputs', `must be ≥ 1, got ${minInputs}`);
    return new HeKeyHolder(await loadSeal(), minInputs);
  }

  /** Decrypts an aggregate to the ring sum. Refuses aggregates of fewer than minInputs inputs. */
  decryptSum(agg: HeAggregate): RingVector {
    if (agg.inputs < this.minInputs) {
      throw new ConfigError(
        'inputs',
        `the key holder decrypts only sums of ≥ ${this.minInputs} inputs, got ${agg.inputs}`,
      );
    }
    const seal = this.#seal;
    const dec = new seal.Decryptor(this.#ctx, this.#kg.secretKey());
    const be = new seal.BatchEncoder(this.#ctx);
    const out = new Float64Array(agg.length);
    agg.chunks.forEach((c, k) => {
      const ct = new seal.Ciphertext();
      ct.loadFromArray(this.#ctx, c);
      const pt = new seal.Plaintext();
      dec.decrypt(ct, pt);
      const vals = be.decodeBigInt64(pt) as BigInt64Array;
      for (let i = 0; i < N && k * N + i < agg.length; i++) out[k * N + i] = Number(vals[i]!);
      ct.delete();
      pt.delete();
    });
    dec.delete();
    be.delete();
    return encodeIntegers(agg.bits, out);
  }
}

/** Worker side: encrypts an encoded vector under the key holder's public key. */
export class HeEncryptor {
  readonly #seal: Seal;
  readonly #ctx: ReturnType<typeof context>;
  readonly #enc: InstanceType<Seal['Encryptor']>;
  readonly #be: InstanceType<Seal['BatchEncoder']>;

  private constructor(seal: Seal, publicKey: Uint8Array) {
    this.#seal = seal;
    this.#ctx = context(seal);
    const pk = new seal.PublicKey();
    pk.loadFromArray(this.#ctx, publicKey);
    this.#enc = new seal.Encryptor(this.#ctx, pk);
    this.#be = new seal.BatchEncoder(this.#ctx);
  }

  static async create(publicKey: Uint8Array): Promise<HeEncryptor> {
    return new HeEncryptor(await loadSeal(), publicKey);
  }

  encrypt(v: RingVector): Uint8Array[] {
    const ints = toIntegers(v);
    const chunks: Uint8Array[] = [];
    for (let off = 0; off < ints.length; off += N) {
      const slot = new BigInt64Array(N);
      for (let i = 0; i < N && off + i < ints.length; i++) slot[i] = BigInt(ints[off + i]!);
      const pt = new this.#seal.Plaintext();
      this.#be.encode(slot, pt);
      const ct = new this.#seal.Ciphertext();
      this.#enc.encrypt(pt, ct);
      chunks.push(toBytes(ct.saveToArray(this.#seal.ComprModeType.zstd)));
      pt.delete();
      ct.delete();
    }
    return chunks;
  }
}

/** Aggregator side: adds ciphertexts; never holds a key that could decrypt them. */
export class HeAccumulator {
  readonly #seal: Seal;
  readonly #ctx: ReturnType<typeof context>;
  readonly #ev: InstanceType<Seal['Evaluator']>;
  #acc: InstanceType<Seal['Ciphertext']>[] = [];
  #inputs = 0;
  readonly length: number;
  readonly bits: RingBits;

  private constructor(seal: Seal, length: number, bits: RingBits) {
    this.#seal = seal;
    this.#ctx = context(seal);
    this.#ev = new seal.Evaluator(this.#ctx);
    this.length = length;
    this.bits = bits;
  }

  static async create(length: number, bits: RingBits): Promise<HeAccumulator> {
    return new HeAccumulator(await loadSeal(), length, bits);
  }

  add(chunks: readonly Uint8Array[]): void {
    const want = Math.ceil(this.length / N);
    if (chunks.length !== want)
      throw new ConfigError('chunks', `expected ${want} ciphertexts, got ${chunks.length}`);
    chunks.forEach((c, k) => {
      const ct = new this.#seal.Ciphertext();
      ct.loadFromArray(this.#ctx, c);
      if (this.#inputs === 0) this.#acc.push(ct);
      else {
        this.#ev.addInplace(this.#acc[k]!, ct);
        ct.delete();
      }
    });
    this.#inputs++;
  }

  result(): HeAggregate {
    return {
      chunks: this.#acc.map((c) => toBytes(c.saveToArray(this.#seal.ComprModeType.zstd))),
      inputs: this.#inputs,
      length: this.length,
      bits: this.bits,
    };
  }
}
