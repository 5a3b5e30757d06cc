import { expect } from 'chai';
import { jobMessageBytes, parametersFingerprint } from './aggregation.js';

describe('aggregation: what the worker and the coordinator share', () => {
  it('sizes the message limit to the job: a 64-bit masked vector, or the HE ciphertexts, plus 1 MiB', () => {
    expect(jobMessageBytes(26_010, 'masking')).to.equal(26_010 * 8 + 2 ** 20);
    // d + 1 values (the count slot) in ⌈(d + 1) / 4096⌉ ciphertexts of at most 256 KiB.
    expect(jobMessageBytes(4095, 'he')).to.equal(256 * 1024 + 2 ** 20);
    expect(jobMessageBytes(4096, 'he')).to.equal(2 * 256 * 1024 + 2 ** 20);
    expect(jobMessageBytes(26_010, 'masking')).to.be.below(512 * 2 ** 20);
  });

  it('fingerprints a model version by its bytes: one changed parameter changes it', () => {
    const p = Float32Array.from([0.5, -1, 2]);
    const f = parametersFingerprint(p);
    expect(f).to.match(/^[0-9a-f]{64}$/);
    expect(parametersFingerprint(Float32Array.from(p))).to.equal(f);
    const q = Float32Array.from(p);
    q[1] = -1.0000001;
    expect(parametersFingerprint(q)).to.not.equal(f);
    // A view is fingerprinted by its own bytes, not its buffer's.
    expect(parametersFingerprint(new Float32Array([9, 0.5, -1, 2]).subarray(1))).to.equal(f);
  });
});
