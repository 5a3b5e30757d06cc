// HE contributions the key holder can check: each worker pads its plaintext slots with a stream
// only it and the key holder can compute, and the key holder removes exactly the declared
// contributors' pads before it releases anything.
//
// Why: the aggregator holds the BFV public key, so with a count slot alone it could take one
// worker's ciphertext, add Enc(k − 1) and pass it off as a sum of k (issue 15). Here worker i's
// slot s holds u_is = x_is + r_is mod p, where r_is = PRF(k_i, nonce, s) and
// k_i = HKDF(ECDH(worker i's certified key, the key holder's certified key)). Whatever the
// aggregator computes from the ciphertexts it holds, the key holder's answer for a nonce is that
// plaintext minus Σ_{i∈C} r_i for the declared contributors C: since the u's are uniform and
// independent of the x's, the only function of the x's the answer carries is Σ_{i∈C} x_i (plus
// values the aggregator chose), and a declared contributor that did not pad under this nonce
// leaves a uniform pad on everything. The last HE_CHECK_SLOTS slots hold x = 0, so an aggregate
// that is not the plain sum of C's inputs is detected (and refused) except with probability
// p^-2 ≈ 2^-120. The full argument is in docs/secure-aggregation.md (HE mode).
//
// Identities: the job's CA (ray-cluster's pki.py) issues the key holder's certificate with CN
// KEY_HOLDER_NAME and the workers' with CN worker-<i>; every key is ECDSA/ECDH P-256. The key
// holder signs heRoundStatement (its public key's digest, the round, the nonce) so that
// workers encrypt only under a key, and pad only under a nonce, it vouches for.
import {
  createCipheriv,
  createHash,
  createPrivateKey,
  diffieHellman,
  hkdfSync,
  sign,
  verify,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { ConfigError, PermissionError } from './errors.js';
import { allocRing, type RingBits, type RingVector } from './masking.js';

/** The BFV plain modulus, PlainModulus.Batching(4096, 60) (he.ts checks SEAL agrees). */
export const HE_PLAIN_MODULUS = 1152921504606830593n;
/** Slots after the vector that hold 0 (plus their pads): the key holder's check. */
export const HE_CHECK_SLOTS = 2;
/** The common name (and DNS SAN) of the key holder's job certificate. */
export const KEY_HOLDER_NAME = 'tensorguard-key-holder';

const P = HE_PLAIN_MODULUS;
const LOW60 = (1n << 60n) - 1n;

/** One party's job identity: the CA and its own certificate and private key, PEM (a `--tls-dir`). */
export interface JobIdentity {
  ca: Uint8Array;
  cert: Uint8Array;
  key: Uint8Array;
}

function commonName(cert: X509Certificate): string | undefined {
  return /^CN=(.*)$/m.exec(cert.subject)?.[1];
}

/**
 * A party's view of the job's PKI: verifies other parties' certificates against the CA (cached by
 * their bytes), signs with its own key and derives pairwise pad keys.
 */
export class JobPki {
  readonly ca: X509Certificate;
  readonly cert: X509Certificate;
  readonly certPem: Uint8Array;
  readonly #key: KeyObject;
  readonly #checked = new Map<string, X509Certificate | string>();

  /** Throws ConfigError when the files do not parse or the certificate is not the CA's. */
  constructor(id: JobIdentity) {
    try {
      this.ca = new X509Certificate(Buffer.from(id.ca));
      this.cert = new X509Certificate(Buffer.from(id.cert));
      this.#key = createPrivateKey(Buffer.from(id.key));
    } catch (err) {
      throw new ConfigError(
        'identity',
        `the job identity (ca.pem, cert.pem, key.pem) does not parse: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    if (!this.cert.checkIssued(this.ca) || !this.cert.verify(this.ca.publicKey))
      throw new ConfigError(
        'identity',
        "cert.pem is not issued by the job's ca.pem; pass the job's --tls-dir",
      );
    if (this.#key.asymmetricKeyType !== 'ec' || this.#key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
      throw new ConfigError('identity', 'key.pem must be an EC P-256 key (what pki.py issues)');
    this.certPem = Uint8Array.from(Buffer.from(id.cert));
  }

  /** This party's common name. */
  get name(): string | undefined {
    return commonName(this.cert);
  }

  /**
   * The certificate `pem` when the job's CA issued it, it is valid now and its common name is
   * `name`. Throws PermissionError saying which of these fails.
   */
  member(pem: Uint8Array, name: string): X509Certificate {
    const k = Buffer.from(pem).toString('latin1');
    let entry = this.#checked.get(k);
    if (entry === undefined) {
      try {
        const cert = new X509Certificate(Buffer.from(pem));
        const now = Date.now();
        if (!cert.checkIssued(this.ca) || !cert.verify(this.ca.publicKey))
          entry = "not issued by the job's CA";
        else if (Date.parse(cert.validFrom) > now || now > Date.parse(cert.validTo)) entry = 'not valid now';
        else entry = cert;
      } catch {
        entry = 'not an X.509 certificate';
      }
      this.#checked.set(k, entry);
    }
    if (typeof entry === 'string')
      throw new PermissionError(`the certificate offered for ${name} is ${entry}`);
    const cn = commonName(entry);
    if (cn !== name)
      throw new PermissionError(`the certificate offered for ${name} names ${JSON.stringify(cn ?? null)}`);
    return entry;
  }

  sign(data: Uint8Array): Uint8Array {
    return new Uint8Array(sign('sha256', data, this.#key));
  }

  /** Whether `signature` is `cert`'s ECDSA-SHA256 signature over `data`. */
  static verify(cert: X509Certificate, data: Uint8Array, signature: Uint8Array): boolean {
    try {
      return verify('sha256', data, cert.publicKey, signature);
    } catch {
      return false;
    }
  }

  /**
   * The 32-byte key this party shares with the owner of `peer`: HKDF-SHA256 of their P-256 ECDH
   * secret, bound to the job's CA. Both sides compute the same key; nobody else can.
   */
  padKey(peer: X509Certificate): Buffer {
    const secret = diffieHellman({ privateKey: this.#key, publicKey: peer.publicKey });
    const info = Buffer.concat([
      Buffer.from('tensorguard/he-pad-key/v1\0'),
      Buffer.from(this.ca.fingerprint256),
    ]);
    return Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), info, 32));
  }
}

/** SHA-256 of the BFV public key: what the key holder's signature vouches for. */
export function heKeyDigest(publicKey: Uint8Array): Buffer {
  return createHash('sha256').update(publicKey).digest();
}

/** The bytes the key holder signs for one round: the key's digest, the round and the nonce. */
export function heRoundStatement(publicKey: Uint8Array, round: number, nonce: Uint8Array): Buffer {
  const head = Buffer.from('tensorguard/he-round/v1\0');
  const num = Buffer.alloc(8);
  num.writeBigUInt64BE(BigInt(round), 0);
  return Buffer.concat([head, heKeyDigest(publicKey), num, Buffer.from(nonce)]);
}

/**
 * `length` pads in [0, p): an AES-256-CTR stream keyed by HKDF(padKey, nonce, keyDigest), read as
 * 64-bit words whose low 60 bits are kept unless ≥ p (rejection sampling: exactly uniform).
 */
export function hePads(
  padKey: Uint8Array,
  keyDigest: Uint8Array,
  nonce: Uint8Array,
  length: number,
): BigUint64Array {
  const info = Buffer.concat([Buffer.from('tensorguard/he-pad/v1\0'), Buffer.from(keyDigest)]);
  const key = Buffer.from(hkdfSync('sha256', padKey, nonce, info, 32));
  const aes = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const out = new BigUint64Array(length);
  let filled = 0;
  while (filled < length) {
    // p/2^60 > 1 − 2^-46: a block of `length − filled + 8` words almost always suffices.
    const want = length - filled + 8;
    let block: Uint8Array = aes.update(Buffer.alloc(want * 8));
    if (block.byteOffset % 8 !== 0) block = new Uint8Array(block); // a pooled buffer may be unaligned
    const words = new BigUint64Array(block.buffer, block.byteOffset, want);
    for (let j = 0; j < want && filled < length; j++) {
      const w = words[j]! & LOW60;
      if (w < P) out[filled++] = w;
    }
  }
  return out;
}

/** (a + b) mod p, elementwise into a (both in [0, p)). */
export function addModP(a: BigUint64Array, b: BigUint64Array): void {
  for (let i = 0; i < a.length; i++) {
    const s = a[i]! + b[i]!;
    a[i] = s >= P ? s - P : s;
  }
}

/** (a − b) mod p, elementwise into a (both in [0, p)). */
export function subModP(a: BigUint64Array, b: BigUint64Array): void {
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    a[i] = d < 0n ? d + P : d;
  }
}

/**
 * A worker's plaintext: the centred reading of ring vector `v` mod p, then HE_CHECK_SLOTS zeros,
 * each plus its pad mod p. Values must satisfy |x| < p/2 (planEncoding's HE bound).
 */
export function padContribution(v: RingVector, pads: BigUint64Array): BigUint64Array {
  if (pads.length !== v.length + HE_CHECK_SLOTS)
    throw new RangeError(`need ${v.length + HE_CHECK_SLOTS} pads, got ${pads.length}`);
  const out = new BigUint64Array(pads.length);
  const bits = v instanceof Uint32Array ? 32 : 64;
  for (let i = 0; i < v.length; i++) {
    const x = bits === 32 ? BigInt((v[i] as number) | 0) : BigInt.asIntN(64, v[i] as bigint);
    const m = x < 0n ? x + P : x;
    out[i] = m % P;
  }
  addModP(out, pads);
  return out;
}

/**
 * The ring sum from residues mod p (the check slots already removed): each residue read centred
 * in (−p/2, p/2] and reduced mod 2^bits.
 */
export function residuesToRing(res: BigUint64Array, bits: RingBits): RingVector {
  const out = allocRing(bits, res.length);
  const half = P >> 1n;
  for (let i = 0; i < res.length; i++) {
    const r = res[i]!;
    const c = r > half ? r - P : r;
    if (out instanceof Uint32Array) out[i] = Number(BigInt.asUintN(32, c));
    else out[i] = BigInt.asUintN(64, c);
  }
  return out;
}
