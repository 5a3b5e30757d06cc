import { expect } from 'chai';
import { Adam, SgdMomentum, createOptimizer, learningRateFactor } from './optimizer.js';

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
  describe('learning-rate schedule', () => {
    const factors = (kind: 'constant' | 'linear' | 'cosine', warmupRounds: number, total: number) =>
      Array.from({ length: total }, (_, k) => learningRateFactor({ kind, warmupRounds }, k, total));
    it('warms up linearly, then holds or decays towards 0 without reaching it', () => {
      expect(factors('constant', 0, 4)).to.deep.equal([1, 1, 1, 1]);
      expect(factors('constant', 2, 4)).to.deep.equal([0.5, 1, 1, 1]);
      expect(factors('linear', 0, 4)).to.deep.equal([1, 0.75, 0.5, 0.25]);
      expect(factors('linear', 2, 6)).to.deep.equal([0.5, 1, 1, 0.75, 0.5, 0.25]);
      const cos = factors('cosine', 1, 5);
      expect(cos[0]).to.equal(1);
      expect(cos[1]).to.equal(1);
      expect(cos[3]).to.be.closeTo(0.5, 1e-12);
      expect(cos[4]).to.be.closeTo((1 + Math.cos((3 * Math.PI) / 4)) / 2, 1e-12);
      for (const f of [...factors('linear', 3, 50), ...factors('cosine', 3, 50)]) {
        expect(f).to.be.greaterThan(0);
        expect(f).to.be.at.most(1);
      }
    });
    it("scales each update of SGD and Adam by its round's factor", () => {
      const sgd = createOptimizer(1, {
        kind: 'sgd',
        learningRate: 0.1,
        schedule: { kind: 'linear', warmupRounds: 0 },
        totalSteps: 4,
      });
      const p = Float32Array.from([0]);
      for (let k = 0; k < 4; k++) sgd.step(p, Float32Array.from([1]));
      // 0.1 · (1 + 0.75 + 0.5 + 0.25)
      expect(p[0]).to.be.closeTo(-0.25, 1e-6);
      const adam = createOptimizer(1, {
        kind: 'adam',
        learningRate: 0.01,
        schedule: { kind: 'cosine', warmupRounds: 2 },
        totalSteps: 10,
      });
      const q = Float32Array.from([0]);
      adam.step(q, Float32Array.from([3])); // a constant gradient: Adam's step is lr · factor
      expect(q[0]).to.be.closeTo(-0.005, 1e-6);
      adam.step(q, Float32Array.from([3]));
      expect(q[0]).to.be.closeTo(-0.015, 1e-6);
    });
    it('continues from the checkpointed step count, and holds the last factor past the plan', () => {
      const opts = {
        kind: 'sgd' as const,
        learningRate: 1,
        momentum: 0,
        schedule: { kind: 'linear' as const, warmupRounds: 0 },
        totalSteps: 2,
      };
      const a = createOptimizer(1, opts);
      const p = Float32Array.from([0]);
      a.step(p, Float32Array.from([1]));
      const b = createOptimizer(1, opts);
      b.load(a.state());
      b.step(p, Float32Array.from([1]));
      expect(p[0]).to.be.closeTo(-1.5, 1e-6);
      b.step(p, Float32Array.from([1])); // a third update in a 2-round plan: factor stays 0.5
      expect(p[0]).to.be.closeTo(-2, 1e-6);
    });
    it("refuses a decaying schedule without the job's total steps", () => {
      expect(() =>
        createOptimizer(1, { kind: 'adam', learningRate: 1, schedule: { kind: 'linear', warmupRounds: 0 } }),
      ).to.throw("a 'linear' learning-rate schedule needs the job's total steps");
    });
  });
});
