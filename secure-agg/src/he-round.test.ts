import {
  DuplicateMessageError,
  HeEncryptor,
  HeKeyHolder,
  MalformedMessageError,
  StageError,
  ThresholdError,
  encodeIntegers,
  toIntegers,
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
      length: 5,
      bits: 32,
      keyId,
      deadlineMs: 60_000,
    });
    const input = (index: number, xs: number[]) => ({
      index,
      keyId,
      // HeRound holds no key and checks no pads: plain check slots (zeros) suffice here.
      chunks: enc.encrypt(encodeIntegers(32, [...xs, 0, 0])),
      certificate: new TextEncoder().encode(`cert of ${index}`),
    });
    const sumOf = () => toIntegers(holder.decryptSum({ ...round.aggregate(), length: 5 }).subarray(0, 3));
    return { round, input, sumOf };
  };

  it('sums the contributions that arrived and keeps their certificates for the key holder', async () => {
    const { round, input, sumOf } = await setup(2);
    round.submit(input(0, [1, 2, 3]));
    round.submit(input(2, [-5, 0, 7]));
    expect(round.stageComplete).to.equal(false);
    expect(round.close()).to.deep.equal([0, 2]);
    expect(Array.from(sumOf())).to.deep.equal([-4, 2, 10]);
    expect(new TextDecoder().decode(round.certificate(2))).to.equal('cert of 2');
    expect(round.certificate(1)).to.equal(undefined);
    round.done();
    expect(() => round.submit(input(1, [0, 0, 0]))).to.throw(
      StageError,
      'round 7: an encrypted input arrived in stage DONE',
    );
    round.dispose();
  });

  it('refuses duplicates, other keys and malformed ciphertexts without touching the sum', async () => {
    const { round, input, sumOf } = await setup(2);
    const a = input(0, [1, 1, 1]);
    round.submit(a);
    expect(() => round.submit(a)).to.throw(DuplicateMessageError, 'round 7: member 0 already sent');
    expect(() => round.submit({ ...input(1, [9, 9, 9]), keyId: 'feedfacefeedface' })).to.throw(
      MalformedMessageError,
      "round 7: member 1 encrypted under key feedfacefeedface, not this round's",
    );
    expect(() => round.submit({ ...input(1, [9, 9, 9]), certificate: new Uint8Array(0) })).to.throw(
      MalformedMessageError,
      "round 7: member 1 sent no certificate (the key holder needs it to remove the member's pads)",
    );
    expect(() =>
      round.submit({
        index: 1,
        keyId: a.keyId,
        certificate: a.certificate,
        chunks: [new Uint8Array(64).fill(3)],
      }),
    ).to.throw(MalformedMessageError, /^ciphertext 0 of 1 is not a BFV ciphertext/);
    round.submit(input(1, [2, 2, 2]));
    expect(round.close()).to.deep.equal([0, 1]);
    expect(Array.from(sumOf())).to.deep.equal([3, 3, 3]);
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
