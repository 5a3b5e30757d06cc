import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync } from 'node:crypto';
import { expect } from 'chai';
import { ShareDecryptionError } from './errors.js';
import { agree, decryptFromPeer, deriveKey, encryptForPeer, generateKeyPair, publicKeyOf } from './keys.js';
import { FIELD_PRIME } from './shamir.js';

const ctx = { sessionId: new Uint8Array(16).fill(7), round: 5 };

describe('keys', () => {
  it('X25519 agreement is symmetric and private keys are Shamir-shareable', () => {
    for (let i = 0; i < 20; i++) {
      const a = generateKeyPair();
      const b = generateKeyPair();
      expect(Buffer.from(agree(a.privateKey, b.publicKey)).equals(agree(b.privateKey, a.publicKey))).to.equal(
        true,
      );
      expect(BigInt('0x' + Buffer.from(a.privateKey).toString('hex')) < FIELD_PRIME).to.equal(true);
      expect(Buffer.from(publicKeyOf(a.privateKey)).equals(a.publicKey)).to.equal(true);
    }
  });

  it('raw keys imported as JWK agree with the DER (PKCS#8 / SPKI) reference', () => {
    const PKCS8 = Buffer.from('302e020100300506032b656e04220420', 'hex');
    const SPKI = Buffer.from('302a300506032b656e032100', 'hex');
    const raw = (k: ReturnType<typeof generateKeyPairSync>['publicKey'], type: 'spki' | 'pkcs8') =>
      Uint8Array.from(k.export({ format: 'der', type }).subarray(-32));
    for (let i = 0; i < 20; i++) {
      const a = generateKeyPairSync('x25519');
      const b = generateKeyPairSync('x25519');
      const aPriv = raw(a.privateKey, 'pkcs8');
      const bPub = raw(b.publicKey, 'spki');
      expect(Buffer.from(publicKeyOf(aPriv)).equals(raw(a.publicKey, 'spki'))).to.equal(true);
      const reference = diffieHellman({
        privateKey: createPrivateKey({ key: Buffer.concat([PKCS8, aPriv]), format: 'der', type: 'pkcs8' }),
        publicKey: createPublicKey({ key: Buffer.concat([SPKI, bPub]), format: 'der', type: 'spki' }),
      });
      expect(Buffer.from(agree(aPriv, bPub)).equals(reference)).to.equal(true);
    }
  });

  it('derives distinct keys per purpose and per round', () => {
    const ikm = new Uint8Array(32).fill(1);
    const k1 = Buffer.from(deriveKey(ikm, ctx, 'pairwise-mask'));
    expect(k1.equals(deriveKey(ikm, ctx, 'share-encryption'))).to.equal(false);
    expect(k1.equals(deriveKey(ikm, { ...ctx, round: 6 }, 'pairwise-mask'))).to.equal(false);
    expect(k1.equals(deriveKey(ikm, ctx, 'pairwise-mask'))).to.equal(true);
  });

  it('refuses a small-order public key', () => {
    const a = generateKeyPair();
    expect(() => agree(a.privateKey, new Uint8Array(32))).to.throw('the peer public key is invalid');
  });

  it('share ciphertexts authenticate sender, recipient and round', () => {
    const key = new Uint8Array(32).fill(9);
    const pt = new Uint8Array(64).fill(3);
    const ct = encryptForPeer(key, ctx, 1, 2, pt);
    expect(Buffer.from(decryptFromPeer(key, ctx, 1, 2, ct)).equals(pt)).to.equal(true);
    expect(() => decryptFromPeer(key, ctx, 2, 1, ct)).to.throw(ShareDecryptionError);
    expect(() => decryptFromPeer(key, { ...ctx, round: 6 }, 1, 2, ct)).to.throw(ShareDecryptionError);
    const tampered = Uint8Array.from(ct);
    tampered[20]! ^= 1;
    expect(() => decryptFromPeer(key, ctx, 1, 2, tampered))
      .to.throw(ShareDecryptionError)
      .with.property('message', 'the share ciphertext from worker index 1 to 2 did not authenticate');
  });
});
