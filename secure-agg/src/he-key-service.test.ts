import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeJobPki } from './service/testing/pki.js';
import { honestContribution } from './testing/he-worker.js';
import {
  ConfigError,
  DecryptionPolicyError,
  encodeIntegers,
  HE_CHECK_SLOTS,
  HeAccumulator,
  HeEncryptor,
  HeKeyService,
  JobPki,
  toIntegers,
} from './index.js';

describe("HeKeyService (the key holder's rules)", function () {
  this.timeout(120_000);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-hks-'));
  const pki = makeJobPki(root, 2);
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('refuses a floor below 2 and an identity that is not the key holder’s', async () => {
    for (const m of [0, 1, 1.5]) {
      let err: unknown;
      await HeKeyService.create(m, pki.identity('key-holder')).catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).field).to.equal('minInputs');
    }
    let err: unknown;
    await HeKeyService.create(2, pki.identity('aggregator')).catch((e: unknown) => (err = e));
    expect(err).to.be.instanceOf(ConfigError);
    expect((err as Error).message).to.match(
      /must name tensorguard-key-holder, this one names "tensorguard-aggregator"/,
    );
  });

  it('removes exactly the declared contributors’ pads: a sum over fewer inputs than declared is refused', async () => {
    const service = await HeKeyService.create(2, pki.identity('key-holder'));
    const { publicKey, keyId } = service.publicKey();
    const enc = await HeEncryptor.create(publicKey);
    const workers = [0, 1].map((i) => new JobPki(pki.identity(`worker-${i}`)));
    const v = [encodeIntegers(32, [1, -2, 3]), encodeIntegers(32, [10, 20, -30])];
    const run = async (use: number[], declare: number[]) => {
      const voucher = service.openRound(7);
      const acc = await HeAccumulator.create(3 + HE_CHECK_SLOTS, 32);
      for (const i of use)
        acc.add(
          honestContribution(workers[i]!, enc, voucher.certificate, publicKey, voucher.nonce, v[i]!).chunks,
        );
      const agg = acc.result();
      acc.dispose();
      return () =>
        service.decryptSum({
          round: 7,
          nonce: voucher.nonce,
          keyId,
          contributors: declare.map((i) => ({ id: `worker-${i}`, certificate: workers[i]!.certPem })),
          aggregate: agg,
        });
    };
    expect(Array.from(toIntegers((await run([0, 1], [0, 1]))()))).to.deep.equal([11, 18, -27]);
    expect(await run([0], [0, 1]))
      .to.throw(DecryptionPolicyError, /check slots are not zero/)
      .with.property('rule', 'CHECK_SLOTS');
  });
});
