import { expect } from 'chai';
import fc from 'fast-check';
import {
  DeadlineError,
  DuplicateMessageError,
  MalformedMessageError,
  RoundAbortedError,
  SharePolicyError,
  StageError,
  ThresholdError,
} from './errors.js';
import { encodeIntegers } from './encoding.js';
import { runRoundInProcess } from './in-process.js';
import { addInto, allocRing, ringToBytes, type RingBits, type RingVector } from './masking.js';
import { CHI2_255_P1E6, chiSquareBytes } from './testing/stats.js';
import { compileRound, STAGES, type ActiveStage, type RoundParams } from './messages.js';
import { newSessionId, RoundParticipant } from './participant.js';
import { AggregatorRound } from './round.js';
import { combineShares, type Share } from './shamir.js';

function params(over: Partial<RoundParams> & { n: number }): RoundParams {
  const { n, ...rest } = over;
  return {
    sessionId: newSessionId(),
    round: 1,
    members: Array.from({ length: n }, (_, i) => `w${i}`),
    vectorLength: 8,
    bits: 32,
    threshold: Math.floor(n / 2) + 1,
    degree: n - 1,
    graphSeed: newSessionId(),
    minInputs: Math.floor(n / 2) + 1,
    ...rest,
  };
}

function randomInputs(n: number, d: number, bits: RingBits, seed: number): RingVector[] {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % 2000001;
  };
  return Array.from({ length: n }, () =>
    encodeIntegers(
      bits,
      Array.from({ length: d }, () => next() - 1000000),
    ),
  );
}

function plainSum(inputs: readonly RingVector[], who: readonly number[], bits: RingBits, d: number): Buffer {
  const s = allocRing(bits, d);
  for (const i of who) addInto(s, inputs[i]!);
  return Buffer.from(ringToBytes(s));
}

/** Who is left after each stage given a dropout pattern (worker → first stage it misses). */
function survivorsAt(n: number, drops: ReadonlyMap<number, ActiveStage>): Record<ActiveStage, Set<number>> {
  const at = (stage: ActiveStage) =>
    new Set(
      Array.from({ length: n }, (_, i) => i).filter((i) => {
        const d = drops.get(i);
        return d === undefined || STAGES.indexOf(d) > STAGES.indexOf(stage);
      }),
    );
  return {
    ADVERTISE_KEYS: at('ADVERTISE_KEYS'),
    SHARE_KEYS: at('SHARE_KEYS'),
    MASKED_INPUT: at('MASKED_INPUT'),
    UNMASK: at('UNMASK'),
  };
}

const dropArb = (n: number) =>
  fc.array(fc.integer({ min: 0, max: 11 }), { minLength: n, maxLength: n }).map((codes) => {
    const m = new Map<number, ActiveStage>();
    codes.forEach((c, i) => {
      if (c >= 8) m.set(i, STAGES[c - 8]!);
    });
    return m;
  });

describe('round (in-process)', function () {
  this.timeout(120_000);

  it('unmasks exactly the sum of surviving inputs for any dropout pattern, or aborts below threshold (complete graph, n = 2..50)', () => {
    let successes = 0;
    let aborts = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 50 }).chain((n) =>
          fc.record({
            n: fc.constant(n),
            t: fc.integer({ min: Math.floor(n / 2) + 1, max: n }),
            d: fc.integer({ min: 1, max: 24 }),
            bits: fc.constantFrom(32 as const, 64 as const),
            drops: dropArb(n),
            seed: fc.integer(),
          }),
        ),
        ({ n, t, d, bits, drops, seed }) => {
          const inputs = randomInputs(n, d, bits, seed);
          const rep = runRoundInProcess({
            params: params({ n, threshold: t, minInputs: t, vectorLength: d, bits }),
            inputs,
            dropBefore: drops,
          });
          const u = survivorsAt(n, drops);
          const ok = u.UNMASK.size >= t;
          if (ok) {
            successes++;
            expect(rep.error, rep.error?.message).to.equal(undefined);
            expect(rep.result!.survivors).to.deep.equal([...u.MASKED_INPUT]);
            expect(
              Buffer.from(ringToBytes(rep.result!.sum)).equals(
                plainSum(inputs, [...u.MASKED_INPUT], bits, d),
              ),
            ).to.equal(true);
          } else {
            aborts++;
            expect(rep.result).to.equal(undefined);
            expect(rep.error).to.be.instanceOf(ThresholdError);
            expect(rep.error!.message).to.match(
              /fewer than the (threshold )?\d+( required)?; nothing was unmasked/,
            );
          }
        },
      ),
      { numRuns: 30 },
    );
    expect(successes).to.be.above(0);
    expect(aborts).to.be.above(0);
  });

  it('unmasks exactly with a SecAgg+ sparse graph for any dropout pattern allowed by the per-neighbourhood threshold', () => {
    let successes = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 6, max: 50 }).chain((n) =>
          fc.record({
            n: fc.constant(n),
            half: fc.integer({ min: 1, max: Math.floor((n - 3) / 2) }),
            d: fc.integer({ min: 1, max: 16 }),
            drops: fc.array(fc.integer({ min: 0, max: 19 }), { minLength: n, maxLength: n }).map((codes) => {
              const m = new Map<number, ActiveStage>();
              codes.forEach((c, i) => c >= 16 && m.set(i, STAGES[c - 16]!));
              return m;
            }),
            seed: fc.integer(),
          }),
        ),
        ({ n, half, d, drops, seed }) => {
          const degree = 2 * half;
          const t = Math.floor((degree + 1) / 2) + 1;
          const p = params({ n, degree, threshold: t, minInputs: 2, vectorLength: d });
          const inputs = randomInputs(n, d, 32, seed);
          const rep = runRoundInProcess({ params: p, inputs, dropBefore: drops });
          const g = compileRound(p);
          const u = survivorsAt(n, drops);
          const viable = (set: Set<number>, owners: Iterable<number>) =>
            [...owners].every((o) => g.holders[o]!.filter((h) => set.has(h)).length >= t);
          const rebuild = [...u.SHARE_KEYS].filter(
            (o) => u.MASKED_INPUT.has(o) || g.neighbours[o]!.some((v) => u.MASKED_INPUT.has(v)),
          );
          const ok =
            viable(u.ADVERTISE_KEYS, u.ADVERTISE_KEYS) &&
            viable(u.SHARE_KEYS, u.SHARE_KEYS) &&
            viable(u.MASKED_INPUT, rebuild) &&
            viable(u.UNMASK, rebuild) &&
            u.MASKED_INPUT.size >= 2;
          if (ok) {
            successes++;
            expect(rep.error, rep.error?.message).to.equal(undefined);
            expect(
              Buffer.from(ringToBytes(rep.result!.sum)).equals(plainSum(inputs, [...u.MASKED_INPUT], 32, d)),
            ).to.equal(true);
          } else {
            expect(rep.error).to.be.instanceOf(ThresholdError);
          }
        },
      ),
      { numRuns: 20 },
    );
    expect(successes).to.be.above(0);
  });

  it('aborts with a clear error and unmasks nothing when survivors fall below t', () => {
    const n = 5;
    const rep = runRoundInProcess({
      params: params({ n, threshold: 4, minInputs: 4 }),
      inputs: randomInputs(n, 8, 32, 1),
      dropBefore: new Map([
        [0, 'MASKED_INPUT'],
        [1, 'MASKED_INPUT'],
      ]),
    });
    expect(rep.result).to.equal(undefined);
    expect(rep.error).to.be.instanceOf(ThresholdError);
    expect(rep.error!.message).to.equal(
      'round 1 aborted after MASKED_INPUT: 3 workers remain, fewer than the 4 required; nothing was unmasked',
    );
  });

  it("the aggregator's view of one worker's masked vector is uniform (byte and bit tests)", () => {
    const n = 3;
    const d = 1 << 16;
    const p = compileRound(params({ n, vectorLength: d, threshold: 2, minInputs: 2 }));
    const agg = new AggregatorRound(p);
    const ws = [0, 1, 2].map((i) => new RoundParticipant(p, i));
    for (const w of ws) agg.submitAdvertiseKeys(w.advertiseKeys());
    agg.closeStage();
    for (const w of ws) agg.submitShareKeys(w.shareKeys(agg.keyRoster()));
    agg.closeStage();
    // A maximally structured input: all zeros.
    const y = ws[0]!.maskInputWithShares(agg.sharesFor(0), new Uint32Array(d)).vector as Uint32Array;
    expect(chiSquareBytes(ringToBytes(y))).to.be.below(CHI2_255_P1E6);
    for (let bit = 0; bit < 32; bit++) {
      let ones = 0;
      for (const w of y) ones += (w >>> bit) & 1;
      // Binomial(d, 1/2): 6 standard deviations.
      expect(Math.abs(ones - d / 2)).to.be.below(6 * Math.sqrt(d / 4));
    }
    // Neighbouring words are uncorrelated: serial test on the low byte pairs.
    const pairs = new Uint8Array(d);
    for (let i = 0; i + 1 < d; i += 2) {
      pairs[i] = y[i]! & 0xff;
      pairs[i + 1] = (y[i]! ^ y[i + 1]!) & 0xff;
    }
    expect(chiSquareBytes(pairs)).to.be.below(CHI2_255_P1E6);
  });

  describe('stage checks', () => {
    function setup(n = 4) {
      let now = 1000;
      const p = compileRound(params({ n, threshold: 3, minInputs: 3 }));
      const agg = new AggregatorRound(p, { now: () => now, deadlinesMs: { ADVERTISE_KEYS: 100 } });
      const ws = p.members.map((_, i) => new RoundParticipant(p, i));
      return { p, agg, ws, tick: (ms: number) => (now += ms) };
    }

    it('refuses out-of-stage, duplicate, unknown-index and wrong-length messages with the stage named', () => {
      const { agg, ws } = setup();
      const adv = ws.map((w) => w.advertiseKeys());
      agg.submitAdvertiseKeys(adv[0]!);
      expect(() => agg.submitAdvertiseKeys(adv[0]!)).to.throw(
        DuplicateMessageError,
        'w0 (index 0) already sent its ADVERTISE_KEYS message',
      );
      expect(() => agg.submitShareKeys({ index: 0, shares: [] })).to.throw(
        StageError,
        'round 1 is in stage ADVERTISE_KEYS; a SHARE_KEYS message is not accepted now',
      );
      expect(() => agg.submitAdvertiseKeys({ ...adv[1]!, index: 9 })).to.throw(
        MalformedMessageError,
        'index 9 is not in the roster of 4',
      );
      expect(() => agg.submitAdvertiseKeys({ ...adv[1]!, maskingKey: new Uint8Array(31) })).to.throw(
        'maskingKey must be 32 bytes, got 31',
      );
      expect(() => agg.submitAdvertiseKeys({ ...adv[1]!, maskingKey: new Uint8Array(32) })).to.throw(
        'maskingKey is not a usable X25519 public key',
      );
      for (const a of adv.slice(1, 3)) agg.submitAdvertiseKeys(a);
      agg.closeStage(); // worker 3 missed the stage
      const roster = agg.keyRoster();
      expect(() => agg.submitShareKeys({ index: 3, shares: [] })).to.throw(
        StageError,
        'w3 (index 3) dropped out of round 1 before SHARE_KEYS',
      );
      const sk = ws[0]!.shareKeys(roster);
      expect(() => agg.submitShareKeys({ ...sk, shares: sk.shares.slice(1) })).to.throw(
        'expected one share for each of 2 holders, got 1',
      );
      expect(() =>
        agg.submitShareKeys({
          ...sk,
          shares: [{ ...sk.shares[0]!, ciphertext: new Uint8Array(5) }, ...sk.shares.slice(1)],
        }),
      ).to.throw('a share ciphertext must be 92 bytes, got 5');
      agg.submitShareKeys(sk);
      for (const w of ws.slice(1, 3)) agg.submitShareKeys(w.shareKeys(roster));
      expect(agg.stageComplete).to.equal(true);
      agg.closeStage();
      expect(() => agg.submitMaskedInput({ index: 0, vector: new Uint32Array(7) })).to.throw(
        MalformedMessageError,
        'expected a 32-bit vector of length 8, got 32-bit of length 7',
      );
      expect(() => agg.submitMaskedInput({ index: 0, vector: new BigUint64Array(8) })).to.throw(
        'expected a 32-bit vector of length 8, got 64-bit of length 8',
      );
    });

    it('enforces the stage deadline and closes the stage after it', () => {
      const { agg, ws, tick } = setup();
      for (const w of ws.slice(0, 3)) agg.submitAdvertiseKeys(w.advertiseKeys());
      tick(101);
      expect(() => agg.submitAdvertiseKeys(ws[3]!.advertiseKeys())).to.throw(
        DeadlineError,
        'the ADVERTISE_KEYS deadline of round 1 has passed',
      );
      expect(agg.closeStage()).to.equal('SHARE_KEYS');
    });

    it('an aborted round refuses every later message', () => {
      const { agg, ws } = setup();
      agg.submitAdvertiseKeys(ws[0]!.advertiseKeys());
      expect(() => agg.closeStage()).to.throw(
        ThresholdError,
        'round 1 aborted after ADVERTISE_KEYS: 1 workers remain, fewer than the 3 required',
      );
      expect(agg.stage).to.equal('ABORTED');
      expect(() => agg.submitAdvertiseKeys(ws[1]!.advertiseKeys())).to.throw(RoundAbortedError);
      expect(() => agg.result()).to.throw(StageError, 'round 1 has no result in stage ABORTED');
    });

    it('a participant refuses to act out of order', () => {
      const { ws } = setup();
      expect(() => ws[0]!.maskInput(new Uint32Array(8))).to.throw(
        StageError,
        'cannot mask the input in state INIT (expected READY)',
      );
      expect(() => ws[0]!.unmask([0, 1, 2])).to.throw(
        StageError,
        'cannot unmask in state INIT (expected SUBMITTED)',
      );
    });
  });

  describe('never both kinds of share for one worker', () => {
    function toSubmitted(n: number, t: number) {
      const p = compileRound(params({ n, threshold: t, minInputs: t }));
      const agg = new AggregatorRound(p);
      const ws = p.members.map((_, i) => new RoundParticipant(p, i));
      for (const w of ws) agg.submitAdvertiseKeys(w.advertiseKeys());
      agg.closeStage();
      for (const w of ws) agg.submitShareKeys(w.shareKeys(agg.keyRoster()));
      agg.closeStage();
      for (const w of ws)
        agg.submitMaskedInput(w.maskInputWithShares(agg.sharesFor(w.index), new Uint32Array(8)));
      return { p, ws };
    }

    it('an honest worker answers one unmask request per round and refuses a different second one', () => {
      const { ws } = toSubmitted(5, 3);
      const first = ws[0]!.unmask([0, 1, 2, 3, 4]);
      expect(first.maskingKeyShares).to.deep.equal([]);
      expect(ws[0]!.unmask([4, 3, 2, 1, 0])).to.equal(first); // a retry of the same request
      expect(() => ws[0]!.unmask([0, 1, 2, 3])).to.throw(
        SharePolicyError,
        'already answered a different unmask request',
      );
      // Each answer has one kind of share per peer.
      const other = ws[1]!.unmask([0, 1, 2, 3]);
      const self = new Set(other.selfMaskShares.map((s) => s.owner));
      for (const s of other.maskingKeyShares) expect(self.has(s.owner)).to.equal(false);
      expect(() => ws[2]!.unmask([0, 2])).to.throw(
        ThresholdError,
        'only 2 inputs survived; at least 3 are required',
      );
      expect(() => ws[3]!.unmask([0, 1, 2])).to.throw(
        MalformedMessageError,
        'the survivor set omits this worker',
      );
    });

    it('an equivocating aggregator that tells workers different survivor sets never gets t shares of both kinds', () => {
      // Try every split of the 7 workers into "told the victim survived" (reveal b-shares) and
      // "told the victim dropped" (reveal s-shares). With t > n/2 no split yields both.
      const n = 7;
      const t = 4;
      const victim = 6;
      for (let mask = 0; mask < 1 << (n - 1); mask++) {
        const { ws: fresh } = toSubmitted(n, t);
        const b: Share[] = [];
        const s: Share[] = [];
        for (const w of fresh) {
          const toldSurvived = ((mask >> w.index) & 1) === 1 || w.index === victim;
          const survivors = Array.from({ length: n }, (_, i) => i).filter(
            (i) => toldSurvived || i !== victim,
          );
          let ans;
          try {
            ans = w.unmask(survivors);
          } catch {
            continue;
          }
          // A later different request is refused, so nothing more can be collected from w.
          expect(() =>
            w.unmask(
              survivors.length === n
                ? survivors.filter((i) => i !== victim)
                : Array.from({ length: n }, (_, i) => i),
            ),
          ).to.throw(SharePolicyError);
          for (const x of ans.selfMaskShares) if (x.owner === victim) b.push({ x: w.index + 1, y: x.share });
          for (const x of ans.maskingKeyShares)
            if (x.owner === victim) s.push({ x: w.index + 1, y: x.share });
        }
        expect(b.length + s.length).to.be.at.most(n);
        expect(b.length >= t && s.length >= t, `split ${mask.toString(2)}`).to.equal(false);
        if (b.length < t) expect(() => combineShares(b, t)).to.throw(ThresholdError);
        if (s.length < t) expect(() => combineShares(s, t)).to.throw(ThresholdError);
      }
    });
  });
});
