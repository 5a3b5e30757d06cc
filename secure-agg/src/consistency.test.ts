// Against an aggregator that lies: with job identities (RoundIdentity) it can neither substitute
// the keys workers agree on nor tell workers different survivor sets to collect both kinds of
// share of one worker (the consistency check of Bonawitz et al. 2017).
import { expect } from 'chai';
import { generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { SharePolicyError } from './errors.js';
import { encodeIntegers } from './encoding.js';
import { generateKeyPair } from './keys.js';
import {
  compileRound,
  type AdvertiseKeys,
  type CompiledRound,
  type EncryptedShare,
  type RoundIdentity,
  type SurvivorAttestation,
  type UnmaskShares,
} from './messages.js';
import { newSessionId, RoundParticipant } from './participant.js';

/**
 * Test identities: Ed25519 keys registered per member id (a stand-in for the job's CA, which
 * worker-ts implements with X.509 certificates). A credential is the raw public key.
 */
function identities(members: readonly string[]): RoundIdentity[] {
  const keys = members.map(() => generateKeyPairSync('ed25519'));
  const registry = new Map<string, KeyObject>(members.map((m, i) => [m, keys[i]!.publicKey]));
  return keys.map((k) => ({
    credential: new Uint8Array(k.publicKey.export({ type: 'spki', format: 'der' })),
    sign: (data) => new Uint8Array(sign(null, data, k.privateKey)),
    verify: (member, credential, data, signature) => {
      const known = registry.get(member);
      if (!known) return false;
      const der = known.export({ type: 'spki', format: 'der' });
      return Buffer.from(credential).equals(der) && verify(null, data, known, signature);
    },
  }));
}

function round(n: number, minInputs: number, degree = n - 1): CompiledRound {
  return compileRound({
    sessionId: newSessionId(),
    round: 3,
    members: Array.from({ length: n }, (_, i) => `worker-${i}`),
    vectorLength: 4,
    bits: 32,
    threshold: Math.min(degree + 1, Math.max(minInputs, Math.floor((degree + 1) / 2) + 1)),
    degree,
    graphSeed: newSessionId(),
    minInputs,
  });
}

/** Runs key setup and masked input for every worker; the aggregator is this function. */
function setUp(params: CompiledRound, withIdentity: boolean): RoundParticipant[] {
  const ids = withIdentity ? identities(params.members) : [];
  const ps = params.members.map(
    (_, i) => new RoundParticipant(params, i, withIdentity ? { identity: ids[i]! } : {}),
  );
  const roster = ps.map((p) => p.advertiseKeys());
  const shares = ps.map((p) => p.shareKeys(roster).shares);
  const inbox = (to: number): EncryptedShare[] => shares.flat().filter((s) => s.to === to);
  ps.forEach((p, i) => p.maskInputWithShares(inbox(i), encodeIntegers(32, [i, 1, 2, 3])));
  return ps;
}

describe('secure aggregation with job identities, against a lying aggregator', function () {
  this.timeout(120_000);

  it('a roster whose keys for one member were replaced by the aggregator’s own is refused by every other worker', () => {
    const params = round(4, 2);
    const ids = identities(params.members);
    const ps = params.members.map((_, i) => new RoundParticipant(params, i, { identity: ids[i]! }));
    const roster: AdvertiseKeys[] = ps.map((p) => p.advertiseKeys());
    // Man in the middle: the aggregator's keys in place of worker 1's, signature kept.
    const mitm = generateKeyPair();
    roster[1] = { ...roster[1]!, encryptionKey: mitm.publicKey, maskingKey: generateKeyPair().publicKey };
    for (const i of [0, 2, 3])
      expect(() => ps[i]!.shareKeys(roster)).to.throw(
        SharePolicyError,
        "the roster's keys for index 1 (worker-1) are not signed by that member's job identity",
      );
    // Unsigned keys (no identity) are refused just the same.
    const bare = params.members.map((_, i) => new RoundParticipant(params, i, { identity: ids[i]! }));
    const unsigned = bare
      .map((p) => p.advertiseKeys())
      .map(({ index, encryptionKey, maskingKey }) => ({
        index,
        encryptionKey,
        maskingKey,
      }));
    expect(() => bare[0]!.shareKeys(unsigned)).to.throw(SharePolicyError, 'are not signed');
  });

  it('an honest round: every survivor attests the same set and unmasks with the others’ attestations', () => {
    const params = round(4, 2);
    const ps = setUp(params, true);
    const survivors = [0, 1, 2, 3];
    const atts = ps.map((p) => p.attestSurvivors(survivors));
    for (const p of ps) expect(p.unmask(survivors, atts).selfMaskShares).to.have.length(4);
  });

  it('a worker reveals nothing for a set it did not attest, or with fewer than threshold signatures on it', () => {
    const params = round(5, 2); // Shamir threshold 3
    const ps = setUp(params, true);
    const all = [0, 1, 2, 3, 4];
    const atts = ps.map((p) => p.attestSurvivors(all));
    expect(() => ps[0]!.attestSurvivors([0, 1, 2])).to.throw(
      SharePolicyError,
      'already attested a different',
    );
    const fresh = setUp(params, true);
    fresh.forEach((p) => p.attestSurvivors(all));
    expect(() => fresh[1]!.unmask([0, 1, 2], atts)).to.throw(SharePolicyError, 'did not attest');
    const two = setUp(params, true);
    const twoAtts = two.map((p) => p.attestSurvivors(all)).slice(0, 2);
    expect(() => two[0]!.unmask(all, twoAtts)).to.throw(SharePolicyError, 'only 2 survivors signed');
    // Signatures by members on another set, or repeated, do not count.
    const forged: SurvivorAttestation[] = [
      twoAtts[0]!,
      twoAtts[0]!,
      twoAtts[1]!,
      { index: 3, signature: atts[3]!.signature.slice(1) },
    ];
    const three = setUp(params, true);
    three.forEach((p) => p.attestSurvivors(all));
    expect(() => three[0]!.unmask(all, forged)).to.throw(SharePolicyError, 'only 0 survivors signed');
  });

  /**
   * The equivocation attack on worker A = 0: the aggregator splits the other workers into G1 and
   * G2, tells G1 ∪ {A}... each group a survivor set made of its own members and A (so that each
   * group reveals A's self-mask share and the masking-key shares of the other group, whose pairwise
   * masks with A then fall), collects every attestation it can and hands them all to everyone. A's
   * input falls if b_A and, for every other worker v, s_A or s_v can be rebuilt from revealed shares.
   */
  function equivocate(n: number, t: number, g1: Set<number>, withIdentity: boolean, degree = n - 1): boolean {
    const params = round(n, t, degree);
    const ps = setUp(params, withIdentity);
    const others = Array.from({ length: n - 1 }, (_, i) => i + 1);
    const told = (w: number): number[] => {
      if (w === 0) return [0, ...others.filter((v) => g1.has(v))];
      return [0, ...others.filter((v) => g1.has(v) === g1.has(w))];
    };
    const attestations: SurvivorAttestation[] = [];
    if (withIdentity)
      for (let w = 0; w < n; w++) {
        try {
          attestations.push(ps[w]!.attestSurvivors(told(w)));
        } catch {
          // a set it refuses (too small, say): no attestation
        }
      }
    const answers: UnmaskShares[] = [];
    for (let w = 0; w < n; w++) {
      try {
        answers.push(ps[w]!.unmask(told(w), attestations));
      } catch {
        // refused: reveals nothing
      }
    }
    const count = (kind: 'selfMaskShares' | 'maskingKeyShares', owner: number) =>
      answers.filter((a) => a[kind].some((s) => s.owner === owner)).length;
    const thr = params.threshold;
    const selfMaskOfA = count('selfMaskShares', 0) >= thr;
    const masksOfA = others.every(
      (v) => count('maskingKeyShares', 0) >= thr || count('maskingKeyShares', v) >= thr,
    );
    return selfMaskOfA && masksOfA;
  }

  it('telling groups of workers different survivor sets recovers no input, for every (n ≤ 7, quorum t) and every split', () => {
    let attempts = 0;
    for (let n = 3; n <= 7; n++)
      for (let t = 1; t <= n; t++)
        for (let mask = 0; mask < 1 << (n - 1); mask++) {
          const g1 = new Set(
            Array.from({ length: n - 1 }, (_, i) => i + 1).filter((v) => mask & (1 << (v - 1))),
          );
          if (g1.size === 0 || g1.size === n - 1) continue; // one set for everyone: no equivocation
          attempts++;
          expect(equivocate(n, t, g1, true), `n=${n} t=${t} G1=${[...g1]}`).to.equal(false);
        }
    expect(attempts).to.be.above(200);
  });

  it('with sparse (SecAgg+) graphs the same attack works without identities, and not with them (n = 8)', () => {
    const broken: string[] = [];
    const n = 8;
    for (const degree of [4, 6])
      for (const t of [1, 2, 3])
        for (let mask = 1; mask < (1 << (n - 1)) - 1; mask++) {
          const g1 = new Set(
            Array.from({ length: n - 1 }, (_, i) => i + 1).filter((v) => mask & (1 << (v - 1))),
          );
          const at = `degree=${degree} t=${t} G1=${[...g1]}`;
          expect(equivocate(n, t, g1, true, degree), at).to.equal(false);
          if (equivocate(n, t, g1, false, degree)) broken.push(at);
        }
    // The adversary is real: without the consistency check some split isolates worker 0's input.
    expect(broken.length, 'splits that break the protocol without identities').to.be.above(0);
  });
});
