// How many rounds a worker lets its shard take part in, from its own copy of the job config.
//
// The coordinator is trusted for the accounting it reports, not for the privacy of the release
// (docs/privacy.md): a compromised one could keep opening rounds after the accountant's budget, or
// after the job's rounds, and every round would be one more noisy sum of this worker's records.
// The worker therefore counts the rounds it contributes to and refuses the next one once the
// count reaches the limit the config allows: `rounds`, and, with privacy.epsilonBudget, the rounds
// whose rigorous ε stays within the budget when every round has the fewest honest shares the
// worker accepts (t − colluders: the announcement check refuses fewer members, and the release
// needs t inputs). An honest coordinator never asks for more: it releases at most `rounds` rounds
// and checks the same budget on rounds with at least as many honest shares.
import {
  RdpAccountant,
  distributedDiscreteGaussianEvent,
  epsilonFromRdp,
  poissonSampledEvent,
  DEFAULT_RDP_ORDERS,
} from '@tensorguard/dp';
import { roundPrivacy } from './announcement.js';
import type { RunConfig } from './config.js';

/** The most rounds this worker contributes to, and where the number comes from. */
export interface RoundLimit {
  rounds: number;
  /** E.g. "rounds = 150" or "privacy.epsilonBudget 3 at δ = 1e-5 (...)". */
  source: string;
}

/**
 * The round limit of a job for a worker whose model has `dimension` trainable parameters: the
 * smaller of `rounds` and, when privacy.epsilonBudget is set, the most rounds whose ε (dp's
 * rigorous RDP bound of the integer mechanism: Poisson rate q, shares of the configured std over
 * t − colluders honest contributors, the rounding-inflated sensitivity) is within the budget at δ.
 * σ = 0 (a non-private job) leaves `rounds` as the limit when no budget is set and 0 when one is.
 */
export function roundLimit(cfg: RunConfig, dimension: number): RoundLimit {
  const byRounds: RoundLimit = { rounds: cfg.rounds, source: `rounds = ${cfg.rounds}` };
  const budget = cfg.privacy.epsilonBudget;
  if (budget === null) return byRounds;
  const p = roundPrivacy(cfg, dimension, cfg.workers.count);
  const honest = p.quorum - cfg.privacy.colluders;
  const source = (n: number) =>
    `privacy.epsilonBudget ${budget} at δ = ${cfg.privacy.delta}: ${n} rounds at q = ${cfg.privacy.samplingRate}, σ = ${cfg.privacy.noiseMultiplier} with ${honest} honest shares each`;
  if (!(p.shareStd >= 0.5) || honest < 1) return { rounds: 0, source: source(0) };
  const event = poissonSampledEvent(
    cfg.privacy.samplingRate,
    distributedDiscreteGaussianEvent({
      l2ClipNorm: cfg.privacy.clipNorm,
      granularity: 1 / p.scale,
      dimension,
      localStddev: p.shareStd,
      contributors: honest,
    }),
  );
  const orders = DEFAULT_RDP_ORDERS;
  const curve = new RdpAccountant({ orders }).rdpOf(event);
  const fits = (n: number) =>
    epsilonFromRdp(
      orders,
      curve.map((r) => r * n),
      cfg.privacy.delta,
    ).epsilon <= budget;
  if (fits(cfg.rounds)) return byRounds;
  let lo = 0;
  let hi = cfg.rounds;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return { rounds: lo, source: source(lo) };
}

/** A round this worker will not contribute to: it already took part in as many as allowed. */
export class RoundLimitError extends Error {
  constructor(
    readonly round: number,
    readonly contributed: number,
    readonly limit: RoundLimit,
  ) {
    super(
      `round ${round} refused: this worker has contributed to ${contributed} rounds, the most its job config allows ` +
        `(${limit.source}); the coordinator asked for more than the job's rounds or privacy budget, so it may be ` +
        'compromised or run another config. Start a new job (with its own budget) to train further',
    );
    this.name = 'RoundLimitError';
  }
}
