import { expect } from 'chai';
import {
  DecryptionPolicyError,
  encodeIntegers,
  HeAccumulator,
  HeEncryptor,
  HeKeyService,
  MalformedMessageError,
  ConfigError,
  toIntegers,
  withCountSlot,
  type HeAggregate,
} from './index.js';

describe("HeKeyService (the key holder's rules)", function () {
  this.timeout(120_000);
  let service: HeKeyService;
  let enc: HeEncryptor;
  const sumOf = async (...vs: number[][]): Promise<HeAggregate> => {
    const acc = await HeAccumulator.create(4, 32);
    for (const v of vs) acc.add(enc.encrypt(withCountSlot(encodeIntegers(32, v))));
    const agg = acc.result();
    acc.dispose();
    return agg;
  };

  before(async () => {
    service = await HeKeyService.create(2);
    enc = await HeEncryptor.create(service.publicKey().publicKey);
  });

  it('refuses a floor below 2', async () => {
    for (const m of [0, 1, 1.5]) {
      let err: unknown;
      await HeKeyService.create(m).catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).field).to.equal('minInputs');
    }
  });

  it('decrypts a sum of ≥ minInputs once per round, after the count-slot check', async () => {
    const pk = service.publicKey();
    expect(pk.minInputs).to.equal(2);
    expect(pk.keyId).to.match(/^[0-9a-f]{16}$/);
    const agg = await sumOf([1, -2, 3], [10, 20, -30]);
    const sum = service.decryptSum({ round: 4, contributors: ['a', 'b'], keyId: pk.keyId, aggregate: agg });
    expect(Array.from(toIntegers(sum))).to.deep.equal([11, 18, -27]);
    expect(() => service.decryptSum({ round: 4, contributors: ['a', 'b'], aggregate: agg }))
      .to.throw(DecryptionPolicyError, /^round 4 was already decrypted/)
      .with.property('rule', 'ONCE_PER_ROUND');
  });

  it("refuses one worker's ciphertext, alone or passed off as a sum, and never decrypts that round", async () => {
    const single = await sumOf([1, 2, 3]);
    expect(() => service.decryptSum({ round: 1, contributors: ['a'], aggregate: single }))
      .to.throw(
        DecryptionPolicyError,
        'round 1: the key holder decrypts only sums of ≥ 2 contributions, got 1',
      )
      .with.property('rule', 'MIN_INPUTS');
    expect(() =>
      service.decryptSum({ round: 2, contributors: ['a', 'b'], aggregate: { ...single, inputs: 2 } }),
    )
      .to.throw(
        DecryptionPolicyError,
        'round 2: the aggregate holds 1 contribution(s), not the 2 declared; nothing is returned',
      )
      .with.property('rule', 'COUNT_SLOT');
    const good = await sumOf([1, 1, 1], [2, 2, 2]);
    expect(() => service.decryptSum({ round: 2, contributors: ['a', 'b'], aggregate: good })).to.throw(
      DecryptionPolicyError,
      /^round 2 was already decrypted \(or refused\)/,
    );
  });

  it('refuses malformed requests and other keys', async () => {
    const good = await sumOf([1, 1, 1], [2, 2, 2]);
    expect(() => service.decryptSum({ round: 9, contributors: ['a', 'a'], aggregate: good })).to.throw(
      MalformedMessageError,
      'round 9: contributors must be distinct',
    );
    expect(() =>
      service.decryptSum({ round: 9, contributors: ['a', 'b'], keyId: 'feedfacefeedface', aggregate: good }),
    )
      .to.throw(DecryptionPolicyError, /under key "feedfacefeedface"/)
      .with.property('rule', 'KEY_ID');
    expect(() =>
      service.decryptSum({
        round: 10,
        contributors: ['a', 'b'],
        aggregate: { ...good, chunks: [new Uint8Array(50).fill(7)] },
      }),
    ).to.throw(MalformedMessageError, /^round 10: /);
  });
});
