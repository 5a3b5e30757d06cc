import { expect } from 'chai';
import { encodeIntegers, toIntegers } from './encoding.js';
import { ConfigError, MalformedMessageError } from './errors.js';
import {
  HE_CIPHERTEXT_MAX_BYTES,
  HE_SLOTS,
  HeAccumulator,
  HeEncryptor,
  HeKeyHolder,
  heCiphertextBytesBound,
  loadSeal,
} from './he.js';
import { allocRing, toSigned } from './masking.js';

describe('he (node-seal 6 BFV)', function () {
  this.timeout(120_000);

  it('loads node-seal on this Node (6.x runs on Node 20)', async () => {
    const seal = await loadSeal();
    expect(seal.Version).to.match(/^6\./);
    expect(await loadSeal()).to.equal(seal); // loaded once
  });

  it('sums encrypted 32-bit vectors exactly and decrypts only aggregates', async () => {
    const holder = await HeKeyHolder.create(2);
    const acc = await HeAccumulator.create(5000, 32); // two ciphertexts, the second partly filled
    const vs = [0, 1, 2].map((i) =>
      encodeIntegers(
        32,
        Array.from({ length: 5000 }, (_, j) => (j % 7) - 3 + i),
      ),
    );
    for (const v of vs) {
      const cts = (await HeEncryptor.create(holder.publicKey)).encrypt(v);
      expect(cts).to.have.length(Math.ceil(5000 / HE_SLOTS));
      // the envelope check's bound (heCiphertextBytesBound) holds for real ciphertexts
      for (const ct of cts) expect(ct.length).to.be.within(1, HE_CIPHERTEXT_MAX_BYTES);
      expect(cts.reduce((n, c) => n + c.length, 0)).to.be.at.most(heCiphertextBytesBound(5000));
      acc.add(cts);
    }
    const sum = toIntegers(holder.decryptSum(acc.result()));
    const expected = Float64Array.from({ length: 5000 }, (_, j) => 3 * ((j % 7) - 3) + 3);
    expect(Array.from(sum)).to.deep.equal(Array.from(expected));

    const single = await HeAccumulator.create(5000, 32);
    single.add((await HeEncryptor.create(holder.publicKey)).encrypt(vs[0]!));
    expect(() => holder.decryptSum(single.result())).to.throw(
      ConfigError,
      'inputs: the key holder decrypts only sums of ≥ 2 inputs, got 1',
    );
  });

  it('wraps the 32-bit ring like masking does, and keeps 64-bit sums above 2^53 exact', async () => {
    const holder = await HeKeyHolder.create(2);
    const enc = await HeEncryptor.create(holder.publicKey);

    const a32 = encodeIntegers(32, [2 ** 31 - 1, -(2 ** 31), 5]);
    const acc32 = await HeAccumulator.create(3, 32);
    acc32.add(enc.encrypt(a32));
    acc32.add(enc.encrypt(a32));
    expect(Array.from(toSigned(holder.decryptSum(acc32.result())) as Int32Array)).to.deep.equal([-2, 0, 10]);

    // |Σ| up to 2^58 is exact; doubles could not hold these values.
    const big = [2n ** 56n + 1n, -(2n ** 56n) - 3n, 12345678901234567n];
    const v64 = allocRing(64, 3);
    (toSigned(v64) as BigInt64Array).set(big);
    const acc64 = await HeAccumulator.create(3, 64);
    for (let i = 0; i < 3; i++) acc64.add(enc.encrypt(v64));
    expect(Array.from(toSigned(holder.decryptSum(acc64.result())) as BigInt64Array)).to.deep.equal(
      big.map((x) => 3n * x),
    );
  });

  it('refuses malformed ciphertexts without touching the running sum', async () => {
    const holder = await HeKeyHolder.create(2);
    const enc = await HeEncryptor.create(holder.publicKey);
    const acc = await HeAccumulator.create(10, 32);
    const v = encodeIntegers(
      32,
      Array.from({ length: 10 }, (_, i) => i),
    );
    acc.add(enc.encrypt(v));
    expect(() => acc.add([])).to.throw(ConfigError, 'chunks: expected 1 ciphertexts, got 0');
    expect(() => acc.add([new Uint8Array(100).fill(7)])).to.throw(
      MalformedMessageError,
      /^ciphertext 0 of 1 is not a BFV ciphertext for these parameters \(/,
    );
    acc.add(enc.encrypt(v));
    expect(Array.from(toIntegers(holder.decryptSum(acc.result())))).to.deep.equal(
      Array.from({ length: 10 }, (_, i) => 2 * i),
    );
    expect(() => holder.decryptSum({ ...acc.result(), length: 5000 })).to.throw(
      ConfigError,
      'chunks: expected 2 ciphertexts for 5000 values, got 1',
    );
  });
});
