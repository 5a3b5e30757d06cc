import { expect } from 'chai';
import { encodeIntegers, toIntegers } from './encoding.js';
import { UnavailableError } from './errors.js';
import { HeAccumulator, HeEncryptor, HeKeyHolder, loadSeal } from './he.js';

describe('he (node-seal BFV)', function () {
  this.timeout(60_000);
  let available = true;
  before(async () => {
    try {
      await loadSeal();
    } catch (err) {
      expect(err).to.be.instanceOf(UnavailableError);
      expect((err as Error).message).to.contain('needs exception handling with exnref');
      available = false;
    }
  });

  it('says clearly when node-seal cannot run on this Node', async function () {
    if (available) this.skip();
    await loadSeal().then(
      () => expect.fail('expected UnavailableError'),
      (err: unknown) => expect((err as Error).message).to.match(/^node-seal could not start on Node v\d+/),
    );
  });

  it('sums encrypted vectors exactly and decrypts only aggregates', async function () {
    if (!available) this.skip(); // node-seal 7 needs Node ≥ 22 (see the test above)
    const holder = await HeKeyHolder.create(2);
    const acc = await HeAccumulator.create(5000, 32);
    const vs = [0, 1, 2].map((i) =>
      encodeIntegers(
        32,
        Array.from({ length: 5000 }, (_, j) => (j % 7) - 3 + i),
      ),
    );
    for (const v of vs) acc.add((await HeEncryptor.create(holder.publicKey)).encrypt(v));
    const sum = toIntegers(holder.decryptSum(acc.result()));
    expect(sum[0]).to.equal(-6);
    expect(sum[4999]).to.equal(3 * ((4999 % 7) - 3) + 3);
    const single = await HeAccumulator.create(5000, 32);
    single.add((await HeEncryptor.create(holder.publicKey)).encrypt(vs[0]!));
    expect(() => holder.decryptSum(single.result())).to.throw('decrypts only sums of ≥ 2 inputs, got 1');
  });
});
