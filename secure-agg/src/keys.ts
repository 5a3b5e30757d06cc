// Key agreement and key derivation: X25519 (node:crypto) for pairwise secrets, HKDF-SHA256 to turn
// each agreed secret into a purpose-bound key, AES-256-GCM for the channel that carries Shamir
// shares through the aggregator. Every derivation binds the session and round (`RoundContext`),
// so keys from one round are useless in another even if a worker reused a key pair by mistake.
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { MalformedMessageError, ShareDecryptionError } from './errors.js';
import { FIELD_PRIME } from './shamir.js';

/** Bytes of an X25519 public or private key. */
export const KEY_BYTES = 32;
const GCM_NONCE_BYTES = 12;
const GCM_TAG_BYTES = 16;

/** Identifies one round of one aggregation session; bound into every derived key and AAD. */
export interface RoundContext {
  /** Random per-session identifier chosen by the aggregator (16 bytes is plenty). */
  sessionId: Uint8Array;
  /** Round number, a non-negative safe integer. */
  round: number;
}

export interface KeyPair {
  /** X25519 public key, 32 bytes. */
  publicKey: Uint8Array;
  /** X25519 private scalar, 32 bytes, as a field element < 2^256 - 189 so it can be Shamir-shared. */
  privateKey: Uint8Array;
}

const keyObjects = new WeakMap<Uint8Array, KeyObject>();

// Raw keys are imported as JWK, not DER: Node hands a JWK OKP key straight to
// EVP_PKEY_new_raw_*_key, while DER goes through OpenSSL 3's generic decoder, which costs about
// 12× as much for a private key and 10× for a public one (548 vs 43 µs, 128 vs 11 µs on the
// benchmark machine). With some 150 imports per round of 8 that was a fifth of the round.

function privateKeyObject(raw: Uint8Array): KeyObject {
  // Cached per key buffer: a worker agrees with every neighbour using the same private key.
  const cached = keyObjects.get(raw);
  if (cached) return cached;
  if (raw.length !== KEY_BYTES) {
    throw new MalformedMessageError(`an X25519 private key is ${KEY_BYTES} bytes, got ${raw.length}`);
  }
  // Node requires `x` to be a string but derives the public half from `d`.
  const d = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url');
  const key = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d, x: '' }, format: 'jwk' });
  keyObjects.set(raw, key);
  return key;
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== KEY_BYTES) {
    throw new MalformedMessageError(`an X25519 public key is ${KEY_BYTES} bytes, got ${raw.length}`);
  }
  const x = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' });
}

/** The public key that belongs to a raw private scalar. */
export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  const { x } = privateKeyObject(privateKey).export({ format: 'jwk' });
  return Uint8Array.from(Buffer.from(x!, 'base64url'));
}

/** A fresh X25519 key pair whose private scalar is a valid Shamir secret (< p). */
export function generateKeyPair(): KeyPair {
  for (;;) {
    const privateKey = Uint8Array.from(randomBytes(KEY_BYTES));
    if (BigInt('0x' + Buffer.from(privateKey).toString('hex')) >= FIELD_PRIME) continue;
    return { privateKey, publicKey: publicKeyOf(privateKey) };
  }
}

/**
 * X25519(privateKey, peerPublicKey). Throws MalformedMessageError for a public key of the wrong
 * length or of small order (OpenSSL refuses an all-zero shared secret).
 */
export function agree(privateKey: Uint8Array, peerPublicKey: Uint8Array): Uint8Array {
  const pub = publicKeyObject(peerPublicKey);
  try {
    return Uint8Array.from(diffieHellman({ privateKey: privateKeyObject(privateKey), publicKey: pub }));
  } catch (cause) {
    throw new MalformedMessageError('X25519 agreement failed: the peer public key is invalid', {
      cause,
    });
  }
}

/** Purposes for derived keys; each is a distinct HKDF `info` so keys never collide. */
export type KeyPurpose = 'pairwise-mask' | 'share-encryption' | 'mask-prg';

function salt(ctx: RoundContext): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(ctx.round));
  return Buffer.concat([Buffer.from('tensorguard/secagg/v1'), Buffer.from(ctx.sessionId), b]);
}

/** HKDF-SHA256(ikm, salt = session ‖ round, info = purpose), `length` bytes. */
export function deriveKey(ikm: Uint8Array, ctx: RoundContext, purpose: KeyPurpose, length = 32): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', ikm, salt(ctx), `tensorguard/secagg/${purpose}`, length));
}

/** Additional data binding a share ciphertext to its round, sender and recipient. */
function shareAad(ctx: RoundContext, fromIndex: number, toIndex: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(fromIndex, 0);
  b.writeUInt32BE(toIndex, 4);
  return Buffer.concat([salt(ctx), b]);
}

/** AES-256-GCM encryption of a share bundle from `fromIndex` to `toIndex`: nonce ‖ ct ‖ tag. */
export function encryptForPeer(
  key: Uint8Array,
  ctx: RoundContext,
  fromIndex: number,
  toIndex: number,
  plaintext: Uint8Array,
): Uint8Array {
  const nonce = randomBytes(GCM_NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(shareAad(ctx, fromIndex, toIndex));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Uint8Array.from(Buffer.concat([nonce, ct, cipher.getAuthTag()]));
}

/** Inverse of encryptForPeer; throws ShareDecryptionError when authentication fails. */
export function decryptFromPeer(
  key: Uint8Array,
  ctx: RoundContext,
  fromIndex: number,
  toIndex: number,
  sealed: Uint8Array,
): Uint8Array {
  if (sealed.length < GCM_NONCE_BYTES + GCM_TAG_BYTES) {
    throw new ShareDecryptionError(`a share ciphertext from worker index ${fromIndex} is too short`, {
      fromIndex,
      round: ctx.round,
    });
  }
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, GCM_NONCE_BYTES));
    decipher.setAAD(shareAad(ctx, fromIndex, toIndex));
    decipher.setAuthTag(buf.subarray(buf.length - GCM_TAG_BYTES));
    return Uint8Array.from(
      Buffer.concat([
        decipher.update(buf.subarray(GCM_NONCE_BYTES, buf.length - GCM_TAG_BYTES)),
        decipher.final(),
      ]),
    );
  } catch (cause) {
    throw new ShareDecryptionError(
      `the share ciphertext from worker index ${fromIndex} to ${toIndex} did not authenticate`,
      { fromIndex, round: ctx.round, cause },
    );
  }
}
