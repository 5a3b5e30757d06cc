import { expect } from 'chai';
import { planEncoding } from '@tensorguard/secure-agg';
import { AnnouncementError, checkAnnouncement, roundEncoding, roundPrivacy } from './announcement.js';
import { parseRunConfig, type RunConfig } from './config.js';
import type { RoundOpen } from '@tensorguard/secure-agg/service';
import { DEFAULT_DEADLINES_MS } from '@tensorguard/secure-agg';

const cfg: RunConfig = parseRunConfig({
  name: 't',
  model: { kind: 'mlp' },
  dataset: { format: 'idx', preset: 'fashion-mnist' },
  workers: { count: 4 },
  privacy: { clipNorm: 1, noiseMultiplier: 1.1, delta: 1e-5, epsilonBudget: null, samplingRate: 0.01 },
  secureAggregation: { mode: 'masking', threshold: 3 },
  optimizer: { kind: 'sgd', learningRate: 0.1 },
  rounds: 1,
  evaluation: { everyRounds: 1 },
  checkpoint: { dir: '/tmp/x', everyRounds: 1 },
  envelope: { maxTrainableParameters: 1e6, maxUpdateBytes: 1e8 },
  roundTimeoutMs: 1000,
});
const d = 1000;
const shard = 500;

/** What an honest coordinator announces: the same derivation the coordinator uses. */
function honest(members = 4): RoundOpen {
  const p = roundPrivacy(cfg, d, members);
  const encoding = roundEncoding(cfg, d, members, shard);
  return {
    scheme: 'masking',
    params: {
      sessionId: new Uint8Array(16),
      round: 7,
      members: Array.from({ length: members }, (_, i) => `worker-${i}`),
      vectorLength: d,
      bits: planEncoding(encoding).bits,
      threshold: p.shamirThreshold,
      degree: p.degree,
      graphSeed: new Uint8Array(16),
      minInputs: p.quorum,
    },
    deadlinesMs: DEFAULT_DEADLINES_MS,
    modelVersion: { round: 6, fingerprint: 'ab' },
    training: { encoding, noiseShareStd: p.shareStd, samplingRate: 0.01, clipNorm: 1 },
  };
}

const ctx = { cfg, dimension: d, shardSize: shard, workerId: 'worker-1' };

describe('checkAnnouncement: a worker checks every privacy parameter it is told', () => {
  it('accepts what an honest coordinator announces, at full and at quorum membership', () => {
    expect(() => checkAnnouncement(honest(4), ctx)).not.to.throw();
    expect(() => checkAnnouncement(honest(3), ctx)).not.to.throw();
  });

  // Each row: what a compromised coordinator changes, and the parameter the refusal must name.
  const tampered: [string, (o: RoundOpen) => void, string][] = [
    ['zero noise', (o) => (o.training!.noiseShareStd = 0), 'noiseShareStd'],
    ['half the noise', (o) => (o.training!.noiseShareStd /= 2), 'noiseShareStd'],
    ['a higher sampling rate', (o) => (o.training!.samplingRate = 0.5), 'samplingRate'],
    ['a larger clip norm', (o) => (o.training!.clipNorm = 10), 'clipNorm'],
    ['a quorum of 1', (o) => (o.params = { ...o.params, minInputs: 1 }), 'params.minInputs'],
    [
      'fewer members than the quorum',
      (o) => (o.params = { ...o.params, members: ['worker-0', 'worker-1'] }),
      'params.members',
    ],
    ['a Shamir threshold of 1', (o) => (o.params = { ...o.params, threshold: 1 }), 'params.threshold'],
    ['a sparse graph', (o) => (o.params = { ...o.params, degree: 1 }), 'params.degree'],
    [
      'another vector length',
      (o) => (o.params = { ...o.params, vectorLength: d + 1 }),
      'params.vectorLength',
    ],
    [
      'another scale',
      (o) => (o.training!.encoding = { ...o.training!.encoding, scale: 2 ** 20 }),
      'encoding.scale',
    ],
    [
      'less noise in the bound',
      (o) => (o.training!.encoding = { ...o.training!.encoding, noiseStd: 0 }),
      'encoding.noiseStd',
    ],
    [
      'a bound below this shard',
      (o) => (o.training!.encoding = { ...o.training!.encoding, clipNorm: 1 }),
      'encoding.clipNorm',
    ],
    [
      'another ring',
      (o) => (o.params = { ...o.params, bits: o.params.bits === 32 ? 64 : 32 }),
      'params.bits',
    ],
    [
      'a roster without this worker',
      (o) => (o.params = { ...o.params, members: ['worker-0', 'worker-2', 'worker-3'] }),
      'params.members',
    ],
    ['HE mode on a masking job', (o) => (o.scheme = 'he'), 'scheme'],
    [
      'an HE key on a masking job',
      (o) =>
        (o.he = {
          publicKey: new Uint8Array(8),
          keyId: 'k',
          encryptedInputMs: 1,
          voucher: {
            certificate: new Uint8Array(1),
            nonce: new Uint8Array(32),
            signature: new Uint8Array(1),
          },
        }),
      'he',
    ],
    ['no training parameters', (o) => delete o.training, 'training'],
  ];
  for (const [what, change, parameter] of tampered) {
    it(`refuses ${what}, naming ${parameter}`, () => {
      const o = honest();
      change(o);
      let err: unknown;
      try {
        checkAnnouncement(o, ctx);
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(AnnouncementError);
      expect((err as AnnouncementError).parameter).to.equal(parameter);
      expect((err as AnnouncementError).message).to.match(
        new RegExp(`^round 7 refused: the coordinator announced ${parameter.replace('.', '\\.')} = `),
      );
    });
  }

  it('in HE mode, refuses a key id that is not the public key’s, or a key that changes within the job', async () => {
    const { keyIdOf } = await import('@tensorguard/secure-agg');
    const heCfg = { ...cfg, secureAggregation: { ...cfg.secureAggregation, mode: 'he' as const } };
    const pk = new Uint8Array([1, 2, 3]);
    const o: RoundOpen = {
      ...honest(),
      scheme: 'he',
      he: {
        publicKey: pk,
        keyId: keyIdOf(pk),
        encryptedInputMs: 1,
        voucher: { certificate: new Uint8Array(1), nonce: new Uint8Array(32), signature: new Uint8Array(1) },
      },
    };
    expect(() => checkAnnouncement(o, { ...ctx, cfg: heCfg })).not.to.throw();
    expect(() =>
      checkAnnouncement({ ...o, he: { ...o.he!, keyId: 'other' } }, { ...ctx, cfg: heCfg }),
    ).to.throw(AnnouncementError, 'he.keyId');
    expect(() => checkAnnouncement(o, { ...ctx, cfg: heCfg, heKeyId: 'earlier' })).to.throw(
      AnnouncementError,
      "the key holder's key earlier in this job",
    );
  });

  it('with privacy.colluders = c each share carries σΔ/√(t − c); a share sized for t (colluders ignored) is refused', () => {
    const colluding: RunConfig = { ...cfg, privacy: { ...cfg.privacy, colluders: 1 } };
    const p0 = roundPrivacy(cfg, d, 4);
    const p1 = roundPrivacy(colluding, d, 4);
    // t = 3: shares of variance σ²Δ²/2 instead of σ²Δ²/3, so that 3 survivors minus 1 colluder hold σ²Δ².
    expect(p1.shareStd / p0.shareStd).to.be.closeTo(Math.sqrt(3 / 2), 1e-12);
    expect(() => checkAnnouncement(honest(), { ...ctx, cfg: colluding })).to.throw(
      AnnouncementError,
      'noiseShareStd',
    );
  });
});
