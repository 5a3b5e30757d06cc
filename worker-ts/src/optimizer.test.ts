import { expect } from 'chai';
import { Adam, SgdMomentum, createOptimizer } from './optimizer.js';

describe('optimizer', () => {
  it('SGD with momentum follows the heavy-ball recursion', () => {
    const p = Float32Array.from([1, 2]);
    const o = new SgdMomentum(2, 0.1, 0.9);
    o.step(p, Float32Array.from([1, 0]));
    o.step(p, Float32Array.from([1, 0]));
    // v1 = 1, v2 = 0.9 + 1 = 1.9; p = 1 - 0.1 - 0.19
    expect(p[0]).to.be.closeTo(0.71, 1e-6);
    expect(p[1]).to.equal(2);
  });
  it('Adam takes a step of about lr in the gradient sign at first', () => {
    const p = Float32Array.from([0, 0]);
    const o = new Adam(2, 0.01);
    o.step(p, Float32Array.from([5, -0.001]));
    expect(p[0]).to.be.closeTo(-0.01, 1e-6);
    expect(p[1]).to.be.closeTo(0.01, 1e-4);
  });
  it('state round-trips so a resumed run continues identically', () => {
    const a = createOptimizer(3, { kind: 'adam', learningRate: 0.1 });
    const pa = Float32Array.from([1, 2, 3]);
    a.step(pa, Float32Array.from([1, 2, 3]));
    const b = createOptimizer(3, { kind: 'adam', learningRate: 0.1 });
    b.load(a.state());
    const pb = Float32Array.from(pa);
    a.step(pa, Float32Array.from([0.5, 0, 1]));
    b.step(pb, Float32Array.from([0.5, 0, 1]));
    expect(Array.from(pb)).to.deep.equal(Array.from(pa));
    expect(() => b.load({ step: 1, slots: { m: new Float32Array(2), v: new Float32Array(3) } })).to.throw(
      "optimizer state 'm' has 2 entries, expected 3",
    );
  });
});
