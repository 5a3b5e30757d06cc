// What a round announcement must say, derived from the job's RunConfig alone, and the worker's
// check of a received announcement against it.
//
// The coordinator is not trusted with the privacy parameters: a compromised one could announce a
// zero noise share, a higher sampling rate or a smaller quorum and the worker would otherwise
// comply. Every worker therefore derives the same values from its own copy of the resolved job
// config and refuses a round whose announcement differs in any of them (DESIGN.md, invariants:
// "a worker checks every privacy parameter it is told"). The coordinator derives the values it
// announces with the same functions, so an honest coordinator always passes.
import { keyIdOf, planEncoding, type EncodingOptions, type RoundParams } from '@tensorguard/secure-agg';
import type { RoundOpen } from '@tensorguard/secure-agg/service';
import type { RunConfig } from './config.js';
import { shareStdInteger } from './noise.js';

/** Fixed-point scale when the config names none: 2^16 integers per gradient unit. */
export const DEFAULT_SCALE = 2 ** 16;

/** The privacy parameters of a round with `members` contributors, from the config alone. */
export interface RoundPrivacy {
  /** Integer units per gradient unit. */
  scale: number;
  /** Gradient-unit sensitivity of one example: C inflated by randomized rounding (C + √d/scale). */
  sensitivity: number;
  /**
   * Std, in integer units, of each worker's noise share: σ·Δ·scale/√(t − c) with c the declared
   * colluders, so that any t survivors of which c collude still hold t − c honest shares: σ·Δ.
   */
  shareStd: number;
  /** Fewest contributors a released sum may have (the quorum t, secureAggregation.quorum). */
  quorum: number;
  /** Shamir threshold of each worker's secrets: more than half the holders, and at least t. */
  shamirThreshold: number;
  /** Neighbours per worker: the complete graph. */
  degree: number;
}

export function roundPrivacy(cfg: RunConfig, dimension: number, members: number): RoundPrivacy {
  const scale = cfg.secureAggregation.scale ?? DEFAULT_SCALE;
  const quorum = cfg.secureAggregation.quorum;
  const sensitivity = cfg.privacy.clipNorm + Math.sqrt(dimension) / scale;
  return {
    scale,
    sensitivity,
    shareStd: shareStdInteger(
      cfg.privacy.noiseMultiplier,
      sensitivity,
      scale,
      quorum - cfg.privacy.colluders,
    ),
    quorum,
    shamirThreshold: Math.min(members, Math.max(quorum, Math.floor(members / 2) + 1)),
    degree: members - 1,
  };
}

/**
 * The encoding options of a round: the per-worker bound is C times the largest shard (a worker's
 * clipped sum has at most one term per record), the noise the sum carries at full membership.
 */
export function roundEncoding(
  cfg: RunConfig,
  dimension: number,
  members: number,
  largestShard: number,
): EncodingOptions {
  const p = roundPrivacy(cfg, dimension, members);
  return {
    clipNorm: cfg.privacy.clipNorm * Math.max(1, largestShard),
    scale: p.scale,
    workers: members,
    dimension,
    noiseStd: (p.shareStd / p.scale) * Math.sqrt(members),
    bits: cfg.secureAggregation.bits ?? 'auto',
  };
}

/** A round announcement that differs from the job config in a privacy parameter. */
export class AnnouncementError extends Error {
  constructor(
    readonly round: number,
    /** The announcement's field that differs, e.g. 'noiseShareStd'. */
    readonly parameter: string,
    readonly announced: unknown,
    readonly expected: string,
  ) {
    super(
      `round ${round} refused: the coordinator announced ${parameter} = ${String(announced)}, ` +
        `but the job config gives ${expected}; the coordinator may be compromised or run another config`,
    );
    this.name = 'AnnouncementError';
  }
}

/** Equal up to float rounding (both sides compute the same formula, possibly in another order). */
function same(a: number, b: number): boolean {
  return a === b || Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
}

export interface AnnouncementContext {
  cfg: RunConfig;
  /** This worker's id (`worker-<index>`): it must be in the roster. */
  workerId: string;
  /** Trainable parameters of the worker's model: the vector length. */
  dimension: number;
  /** Records in this worker's shard. */
  shardSize: number;
  /** HE mode: the key id this worker saw first (a key holder's key does not change within a job). */
  heKeyId?: string;
}

/**
 * Throws AnnouncementError naming the first privacy parameter of `open` (secure-agg's round
 * announcement, `training` included) that differs from what the job config gives: noise share,
 * sampling rate, clip norm, quorum, Shamir threshold, graph degree, vector length, fixed-point
 * scale, ring bits and the encoding's bounds, the scheme and the HE key. Field names in the error
 * are RoundTraining's (`noiseShareStd`, `encoding.scale`) and RoundParams' (`params.minInputs`).
 */
export function checkAnnouncement(open: RoundOpen, ctx: AnnouncementContext): void {
  const { cfg, dimension } = ctx;
  const params: RoundParams = open.params;
  const r = params.round;
  const n = params.members.length;
  const p = roundPrivacy(cfg, dimension, n);
  const refuse = (parameter: string, announced: unknown, expected: string): never => {
    throw new AnnouncementError(r, parameter, announced, expected);
  };
  const exact = (parameter: string, announced: number, expected: number, source: string) => {
    if (!same(announced, expected)) refuse(parameter, announced, `${expected} (${source})`);
  };
  const training =
    open.training ?? refuse('training', 'absent', "the round's encoding and noise (a training round)");

  exact('noiseShareStd', training.noiseShareStd, p.shareStd, 'σ·(C + √d/scale)·scale/√(t − colluders)');
  exact('samplingRate', training.samplingRate, cfg.privacy.samplingRate, 'privacy.samplingRate');
  exact('clipNorm', training.clipNorm, cfg.privacy.clipNorm, 'privacy.clipNorm');
  if (n < p.quorum)
    refuse('params.members', `${n} members`, `at least ${p.quorum} (secureAggregation.quorum)`);
  exact('params.minInputs', params.minInputs, p.quorum, 'secureAggregation.quorum');
  exact('params.vectorLength', params.vectorLength, dimension, "the model's trainable parameters");
  if (!params.members.includes(ctx.workerId))
    refuse('params.members', JSON.stringify(params.members), `a roster that includes ${ctx.workerId}`);

  const he = cfg.secureAggregation.mode === 'he';
  const scheme = he ? 'he' : 'masking';
  if (open.scheme !== scheme) refuse('scheme', open.scheme, `${scheme} (secureAggregation.mode)`);
  if (he !== (open.he !== undefined))
    refuse('he', open.he ? 'present' : 'absent', `${he ? 'present' : 'absent'} (secureAggregation.mode)`);
  if (open.he) {
    if (keyIdOf(open.he.publicKey) !== open.he.keyId)
      refuse('he.keyId', open.he.keyId, 'the id of the announced public key');
    if (ctx.heKeyId !== undefined && open.he.keyId !== ctx.heKeyId)
      refuse('he.keyId', open.he.keyId, `${ctx.heKeyId} (the key holder's key earlier in this job)`);
  } else {
    exact('params.threshold', params.threshold, p.shamirThreshold, 'more than half the holders, and ≥ t');
    exact('params.degree', params.degree, p.degree, 'the complete graph');
  }

  const enc = training.encoding;
  exact('encoding.scale', enc.scale, p.scale, 'secureAggregation.scale');
  exact('encoding.dimension', enc.dimension, dimension, "the model's trainable parameters");
  exact('encoding.workers', enc.workers, n, 'the members of the round');
  const noiseStd = (p.shareStd / p.scale) * Math.sqrt(n);
  exact('encoding.noiseStd', enc.noiseStd ?? 0, noiseStd, 'the members’ noise shares');
  if (!(enc.clipNorm >= cfg.privacy.clipNorm * ctx.shardSize))
    refuse(
      'encoding.clipNorm',
      enc.clipNorm,
      `at least C × this worker's records = ${cfg.privacy.clipNorm * ctx.shardSize}`,
    );
  const wantBits = cfg.secureAggregation.bits ?? 'auto';
  if ((enc.bits ?? 'auto') !== wantBits)
    refuse('encoding.bits', enc.bits, `${wantBits} (secureAggregation.bits)`);
  const plannedBits = planEncoding(enc).bits;
  if (params.bits !== plannedBits)
    refuse('params.bits', params.bits, `${plannedBits} (the encoding's sum bound)`);
}
