// Tests only: what an honest HE worker sends (SecureAggClient's HE path without the transport):
// its vector padded under the key holder's nonce, encrypted under the key holder's key.
import {
  HE_CHECK_SLOTS,
  heKeyDigest,
  hePads,
  type JobPki,
  KEY_HOLDER_NAME,
  padContribution,
} from '../he-pad.js';
import type { HeEncryptor } from '../he.js';
import type { RingVector } from '../masking.js';

export function honestContribution(
  worker: JobPki,
  enc: HeEncryptor,
  keyHolderCert: Uint8Array,
  publicKey: Uint8Array,
  nonce: Uint8Array,
  v: RingVector,
): { chunks: Uint8Array[]; certificate: Uint8Array } {
  const key = worker.padKey(worker.member(keyHolderCert, KEY_HOLDER_NAME));
  const pads = hePads(key, heKeyDigest(publicKey), nonce, v.length + HE_CHECK_SLOTS);
  return { chunks: enc.encryptResidues(padContribution(v, pads)), certificate: worker.certPem };
}
