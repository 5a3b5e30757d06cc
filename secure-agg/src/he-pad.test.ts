import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  encodeIntegers,
  HE_CHECK_SLOTS,
  HE_PLAIN_MODULUS,
  hePads,
  JobPki,
  KEY_HOLDER_NAME,
  padContribution,
  PermissionError,
  residuesToRing,
  toIntegers,
} from './index.js';
import { subModP } from './he-pad.js';
import { makeJobPki } from './service/testing/pki.js';

describe('he-pad (pads, check slots, the job PKI)', function () {
  this.timeout(60_000);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tg-pad-'));
  const pki = makeJobPki(root, 2);
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  it('worker and key holder derive the same pad key; another worker derives another', () => {
    const kh = new JobPki(pki.identity('key-holder'));
    const w0 = new JobPki(pki.identity('worker-0'));
    const w1 = new JobPki(pki.identity('worker-1'));
    const k0 = w0.padKey(w0.member(kh.certPem, KEY_HOLDER_NAME));
    expect(kh.padKey(kh.member(w0.certPem, 'worker-0')).equals(k0)).to.equal(true);
    expect(kh.padKey(kh.member(w1.certPem, 'worker-1')).equals(k0)).to.equal(false);
    expect(() => kh.member(w0.certPem, 'worker-1')).to.throw(
      PermissionError,
      'the certificate offered for worker-1 names "worker-0"',
    );
    expect(() => kh.member(new Uint8Array([1, 2, 3]), 'worker-0')).to.throw(
      PermissionError,
      /not an X.509 certificate/,
    );
  });

  it('pads are in [0, p), deterministic per (key, nonce), and unpadding restores the centred vector', () => {
    const key = new Uint8Array(32).fill(1);
    const digest = new Uint8Array(32).fill(2);
    const nonce = new Uint8Array(32).fill(3);
    const a = hePads(key, digest, nonce, 5000);
    expect(a.every((r) => r < HE_PLAIN_MODULUS)).to.equal(true);
    expect(hePads(key, digest, nonce, 5000)).to.deep.equal(a);
    const other = hePads(key, digest, new Uint8Array(32).fill(4), 5000);
    expect(other.filter((r, i) => r === a[i]).length).to.equal(0);
    // Roughly uniform: the mean of 5000 uniform values on [0, p) is p/2 within a few percent.
    const mean = Number(a.reduce((s, r) => s + r, 0n) / 5000n) / Number(HE_PLAIN_MODULUS);
    expect(mean).to.be.within(0.45, 0.55);
    for (const bits of [32, 64] as const) {
      const v = encodeIntegers(bits, [5, -7, 0, 2 ** 30, -(2 ** 30)]);
      const pads = hePads(key, digest, nonce, v.length + HE_CHECK_SLOTS);
      const u = padContribution(v, pads);
      subModP(u, pads);
      expect(Array.from(u.subarray(v.length))).to.deep.equal([0n, 0n]);
      expect(Array.from(toIntegers(residuesToRing(u.subarray(0, v.length), bits)))).to.deep.equal([
        5,
        -7,
        0,
        2 ** 30,
        -(2 ** 30),
      ]);
    }
  });
});
