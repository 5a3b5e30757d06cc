import {
  DuplicateMessageError,
  HeEncryptor,
  HeKeyHolder,
  MalformedMessageError,
  StageError,
  ThresholdError,
  encodeIntegers,
  toIntegers,
  withCountSlot,
  splitCountSlot,
  keyIdOf,
  HeRound,
} from './index.js';
import { expect } from 'chai';

describe('HeRound (coordinator side of an HE round)', function () {
  this.timeout(120_000);

  const setup = async (minInputs: number) => {
    const holder = await HeKeyHolder.create(2);
    const enc = await HeEncryptor.create(holder.publicKey);
    const keyId = keyIdOf(holder.publicKey);
    const round = await HeRound.create({
      round: 7,
      members: ['a', 'b', 'c'],
      minInputs,
      length: 4,
      bits: 32,
      keyId,
      deadlineMs: 60_000,
    });
    const input = (index: number, xs: number[]) => ({
      index,
      keyId,
      chunks: enc.encrypt(withCountSlot(encodeIntegers(32, xs))),
    });
    return { holder, round, input };
  };

  it('sums the contributions that arrived; the count slot counts them', async () => {
    const { holder, round, input } = await setup(2);
    round.submit(input(0, [1, 2, 3]));
    round.submit(input(2, [-5, 0, 7]));
    expect(round.stageComplete).to.equal(false);
    expect(round.close()).to.deep.equal([0, 2]);
    const { sum, count } = splitCountSlot(holder.decryptSum(round.aggregate()));
    expect(count).to.equal(2);
    expect(Array.from(toIntegers(sum))).to.deep.equal([-4, 2, 10]);
    round.done();
    expect(() => round.submit(input(1, [0, 0, 0]))).to.throw(
      StageError,
      'round 7: an encrypted input arrived in stage DONE',
    );
    round.dispose();
  });

  it('refuses duplicates, other keys and malformed ciphertexts without touching the sum', async () => {
    const { holder, round, input } = await setup(2);
    const a = input(0, [1, 1, 1]);
    round.submit(a);
    expect(() => round.submit(a)).to.throw(DuplicateMessageError, 'round 7: member 0 already sent');
    expect(() => round.submit({ ...input(1, [9, 9, 9]), keyId: 'feedfacefeedface' })).to.throw(
      MalformedMessageError,
      "round 7: member 1 encrypted under key feedfacefeedface, not this round's",
    );
    expect(() => round.submit({ index: 1, keyId: a.keyId, chunks: [new Uint8Array(64).fill(3)] })).to.throw(
      MalformedMessageError,
      /^ciphertext 0 of 1 is not a BFV ciphertext/,
    );
    round.submit(input(1, [2, 2, 2]));
    expect(round.close()).to.deep.equal([0, 1]);
    const { sum, count } = splitCountSlot(holder.decryptSum(round.aggregate()));
    expect(count).to.equal(2);
    expect(Array.from(toIntegers(sum))).to.deep.equal([3, 3, 3]);
    round.dispose();
  });

  it('aborts below minInputs: nothing to decrypt', async () => {
    const { round, input } = await setup(3);
    round.submit(input(0, [1, 2, 3]));
    round.submit(input(1, [1, 2, 3]));
    expect(() => round.close()).to.throw(
      ThresholdError,
      'round 7 aborted after ENCRYPTED_INPUT: 2 contributions arrived, fewer than the 3 required; nothing was decrypted',
    );
    expect(round.stage).to.equal('ABORTED');
    expect(() => round.aggregate()).to.throw(StageError, 'round 7: aggregate() in stage ABORTED');
    round.dispose();
  });
});
