// The FFT convolution the PLD accountant composes with, against the direct O(n·m) sum.
import { expect } from 'chai';
import { convolve, fft } from './fft.js';

function direct(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length + b.length - 1);
  for (let i = 0; i < a.length; i++) for (let j = 0; j < b.length; j++) out[i + j]! += a[i]! * b[j]!;
  return out;
}

function pmf(n: number, seed: number): Float64Array {
  // A deterministic, uneven probability vector (a few large entries, a long small tail).
  const p = new Float64Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    p[i] = (x / 2147483648) ** 4 * Math.exp(-i / (n / 4));
  }
  const s = p.reduce((u, v) => u + v, 0);
  return p.map((v) => v / s);
}

describe('fft', () => {
  it('convolve equals the direct sum to 1e-12 of its largest entry, for lengths that are and are not powers of two', () => {
    for (const [n, m] of [
      [1, 1],
      [1, 7],
      [5, 3],
      [64, 64],
      [100, 37],
      [1000, 999],
      [4097, 300],
    ] as const) {
      const a = pmf(n, n + 1);
      const b = pmf(m, 3 * m + 7);
      const want = direct(a, b);
      const got = convolve(a, b);
      expect(got.length).to.equal(want.length);
      const top = Math.max(...want);
      let err = 0;
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
      expect(err / top, `${n} × ${m}`).to.be.below(1e-12);
      expect(got.every((v) => v >= 0)).to.equal(true);
    }
  });

  it('the inverse transform undoes the forward one (sizes whose twiddle tables are cached and evicted)', () => {
    for (const n of [2, 8, 1024, 16, 4096, 32, 2048, 8]) {
      const re = Float64Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) + i / n);
      const im = Float64Array.from({ length: n }, (_, i) => Math.cos(i * 1.3));
      const [r0, i0] = [re.slice(), im.slice()];
      fft(re, im);
      fft(re, im, true);
      for (let i = 0; i < n; i++) {
        expect(re[i]! / n).to.be.closeTo(r0[i]!, 1e-12);
        expect(im[i]! / n).to.be.closeTo(i0[i]!, 1e-12);
      }
    }
  });
});
